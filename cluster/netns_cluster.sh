#!/usr/bin/env bash
# A Ray cluster of separate hosts on one Linux machine, for tests (as root): a head, N worker
# nodes, an object store and a client, each in its own network namespace with its own address
# and its own disk.
#
#   cluster/netns_cluster.sh up STATE [N]            # head + N workers (default 2), store, client
#   cluster/netns_cluster.sh exec STATE NODE CMD...  # run CMD on NODE (head, w1.., store, client)
#   cluster/netns_cluster.sh kill STATE NODE         # SIGKILL every process of NODE (power loss)
#   cluster/netns_cluster.sh stop STATE NODE         # end NODE's processes (TERM, then KILL)
#   cluster/netns_cluster.sh down STATE              # end every process and namespace it made
#
# Network: one namespace holds only a bridge; each host's namespace has loopback and one veth to
# that bridge, an address in SUBNET (default 198.18.0.0/24, the block RFC 2544 sets aside for
# such tests), IPv6 off and no default route, so a packet can only go to another of these hosts
# or to the host's own loopback; the root namespace holds none of these links or addresses.
# Disk: a command on a host runs in mount and UTS namespaces of its own (hostname hgs-NODE)
# where /tmp is STATE/disk/NODE (HOME, the working directory and Ray's session live there),
# /dev/shm is a folder on it, the rest of STATE is hidden and the code (the repository, the
# Python prefix) is read-only. Only the head's disk holds the results a driver there writes.
# Ray: GCS health checks every second, a node dead after 5 failed in a row (a killed host
# refuses at once: seconds; a slow one has 5 x 5 s to answer);
# token authentication on every host (one fresh token, in each host's /tmp; the client gets
# none: a test gives it one by copying STATE/token to STATE/disk/client/ray-token); no
# dashboard; usage stats off. The store is an S3 server (moto) at STORE:9000 with a bucket
# `hgsearch`; every host has AWS_ENDPOINT_URL pointing at it, so s3://hgsearch/... reaches it.
# Teardown: `down` signals every process inside the namespaces it recorded (`ip netns pids`:
# whatever runs in them was started here), then deletes the namespaces; a failed `up` does so
# itself. STATE/cluster.env records names and addresses; STATE/disk/NODE/node.log each node's
# log. Settings: SUBNET (its first three octets), PYTHON (default: python3 on PATH), RAY=0 (no
# S3 server, no Ray: the hosts only), SLURM=1 (a Slurm cluster on the hosts, below).
# Names: every host's /etc/hosts lists the hosts (hgs-NODE), as a cluster's DNS would.
# Slurm (SLURM=1; Debian's slurm-wlm and munge): slurmctld on the head, slurmd on each worker
# (node hgs-wN, 1 CPU, partition `main`), munged on each of them as user munge with the key the
# head made (mungekey), copied to each host's /etc/munge as a provisioning step would; each
# host's /etc/slurm and /etc/munge are folders on its own disk (one slurm.conf, the head's,
# copied); its munge socket, Slurm state, spool and logs are under its /tmp/munge, /tmp/slurm.
# No cgroups (proctrack/linuxproc, task/none), no accounting. These hosts share /home
# (STATE/home; HOME=/home/hgs), as a Slurm cluster's hosts share their home over NFS.
set -euo pipefail

self=$(readlink -f "${BASH_SOURCE[0]}")
repo=$(dirname "$(dirname "$self")")

usage() { echo "usage: $0 up STATE [N] | exec STATE NODE CMD... | kill|stop STATE NODE | down STATE" >&2
          exit 2; }

load() {  # STATE: read cluster.env
  state=$(readlink -f "$1")
  [[ -f $state/cluster.env ]] || { echo "$0: no cluster recorded in $state" >&2; exit 1; }
  # shellcheck source=/dev/null
  source "$state/cluster.env"
}

ns_of() { echo "hgs-$ID-$1"; }
addr_of() { local v="ADDR_$1"; echo "${!v}"; }

# ------------------------------------------------------------------------------------- up

up() {
  state=$1; local workers=${2:-2}
  [[ $workers =~ ^[1-9][0-9]?$ ]] || usage
  mkdir -p "$state"; state=$(readlink -f "$state")
  [[ ! -e $state/cluster.env ]] || { echo "$0: $state holds a cluster; down it first" >&2; exit 1; }
  local prefix=${SUBNET:-198.18.0} python=${PYTHON:-python3}
  python=$(command -v "$python")
  local pyprefix; pyprefix=$("$python" -c 'import sys; print(sys.prefix)')
  local id; id=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
  local nodes="head store client" i
  for i in $(seq "$workers"); do nodes="$nodes w$i"; done
  {
    echo "ID=$id"; echo "REPO=$repo"; echo "PYTHON=$python"; echo "PYPREFIX=$pyprefix"
    echo "NODES=\"$nodes\""; echo "WORKERS=$workers"
    echo "ADDR_head=$prefix.2"; echo "ADDR_store=$prefix.3"; echo "ADDR_client=$prefix.4"
    for i in $(seq "$workers"); do echo "ADDR_w$i=$prefix.$((10 + i))"; done
    echo "GCS=$prefix.2:6379"; echo "STORE_URL=http://$prefix.3:9000"; echo "SLURM=${SLURM:-0}"
  } > "$state/cluster.env"
  load "$state"
  trap 'rc=$?; if ((rc)); then echo "$0: up failed; tearing down" >&2; down_loaded; fi' EXIT
  trap 'exit 130' INT TERM

  local net node
  net=$(ns_of net)
  make_ns "$net"
  ip -n "$net" link add br0 type bridge
  ip -n "$net" link set br0 up
  for node in $NODES; do
    make_ns "$(ns_of "$node")"
    ip -n "$net" link add "v-$node" type veth peer name eth0 netns "$(ns_of "$node")"
    ip -n "$net" link set "v-$node" master br0 up
    ip -n "$(ns_of "$node")" addr add "$(addr_of "$node")/24" dev eth0
    ip -n "$(ns_of "$node")" link set eth0 up
    mkdir -p "$state/disk/$node"
    chmod 700 "$state/disk/$node"
  done
  for node in $NODES; do echo "$(addr_of "$node") hgs-$node"; done |
    cat <(echo "127.0.0.1 localhost") - > "$state/hosts"
  if [[ $SLURM == 1 ]]; then slurm_up; fi
  if [[ ${RAY:-1} != 1 ]]; then trap - EXIT INT TERM; return 0; fi
  # One token for the cluster, copied to every host's own disk as a provisioning step would.
  (umask 077 && "$python" -c 'import secrets; print(secrets.token_hex(32))' > "$state/token")
  for node in $NODES; do
    [[ $node == client ]] || install -m 600 "$state/token" "$state/disk/$node/ray-token"
  done

  start store "$python" -m moto.server -H "$ADDR_store" -p 9000
  wait_port store 9000
  start head ray start --head --block --node-ip-address="$ADDR_head" --port=6379 \
    --num-cpus=0 --num-gpus=0 --include-dashboard=false --disable-usage-stats \
    --object-store-memory=100000000 --resources='{"head": 1}'
  wait_port head 6379
  for i in $(seq "$workers"); do
    start "w$i" ray start --block --address="$GCS" --node-ip-address="$(addr_of "w$i")" \
      --num-cpus=1 --num-gpus=0 --disable-usage-stats --object-store-memory=100000000 \
      --resources="{\"w$i\": 1}"
  done
  # From the head: every node alive, and the bucket made (so the store is reachable).
  bash "$self" exec "$state" head python - "$GCS" "$((workers + 1))" <<'EOF'
import sys, time, boto3, ray
ray.init(address=sys.argv[1], logging_level="ERROR")
deadline = time.monotonic() + 120
while sum(n["Alive"] for n in ray.nodes()) < int(sys.argv[2]):
    if time.monotonic() > deadline:
        sys.exit(f"fewer than {sys.argv[2]} nodes alive after 120 s")
    time.sleep(0.5)
boto3.client("s3").create_bucket(Bucket="hgsearch")
EOF
  trap - EXIT INT TERM
}

make_ns() {  # name: a namespace with loopback up and IPv6 off (no link-local chatter)
  ip netns add "$1"
  ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
    net.ipv6.conf.default.disable_ipv6=1
  ip -n "$1" link set lo up
}

start() {  # node, command...: a daemon on the node, in a session of its own
  local node=$1; shift
  start_logged "$node" node.log "$@"
}

start_logged() {  # node, log file (a path on its disk), command...
  local node=$1 log=$2; shift 2
  setsid bash "$self" exec "$state" "$node" "$@" > "$state/disk/$node/$log" 2>&1 < /dev/null &
}

wait_port() {  # node, port: until something listens there (60 s at most)
  local i
  for i in $(seq 120); do
    if ip netns exec "$(ns_of "$1")" ss -Hltn "sport = :$2" | grep -q .; then return 0; fi
    sleep 0.5
  done
  echo "$0: nothing listens on $1:$2 after 60 s; see $state/disk/$1/node.log" >&2
  return 1
}

# ---------------------------------------------------------------------------------- Slurm

slurm_up() {  # munged on every Slurm host, slurmctld on the head, slurmd on the workers
  local cmd node i hosts=(head) nodelist
  for cmd in slurmctld slurmd munged mungekey sinfo; do
    command -v "$cmd" > /dev/null || { echo "$0: $cmd is missing (slurm-wlm, munge)" >&2; return 1; }
  done
  for i in $(seq "$WORKERS"); do hosts+=("w$i"); nodelist+=${nodelist:+,}hgs-w$i; done
  install -d -m 755 "$state/home" "$state/home/hgs"
  for node in "${hosts[@]}"; do
    local disk=$state/disk/$node
    chmod 711 "$disk"          # munged (user munge) reaches its socket under the host's /tmp
    mkdir -p "$disk/etc/slurm" "$disk/slurm/state" "$disk/slurm/spool"
    install -d -o munge -g munge -m 700 "$disk/etc/munge"
    install -d -o munge -g munge -m 711 "$disk/munge"
    install -d -o munge -g munge -m 700 "$disk/munge/lib" "$disk/munge/log"
    install -d -o munge -g munge -m 755 "$disk/munge/run"
  done
  # The head makes the key and the configuration; each worker gets a copy of both.
  local key=$state/disk/head/etc/munge/munge.key conf=$state/disk/head/etc/slurm/slurm.conf
  mungekey --create --keyfile="$key"
  chown munge:munge "$key"; chmod 400 "$key"
  slurm_conf "$nodelist" > "$conf"
  # slurmd loads a cgroup plugin whatever else is set; v1 named, it checks no mount (a host's
  # /sys, fresh from `ip netns exec`, has none) and nothing uses it.
  printf 'CgroupPlugin=cgroup/v1\nCgroupAutomount=no\n' > "${conf%/*}/cgroup.conf"
  for node in "${hosts[@]:1}"; do
    install -o munge -g munge -m 400 "$key" "$state/disk/$node/etc/munge/munge.key"
    install -m 644 -t "$state/disk/$node/etc/slurm" "$conf" "${conf%/*}/cgroup.conf"
  done
  for node in "${hosts[@]}"; do
    start_logged "$node" munge/munged.out setpriv --reuid=munge --regid=munge --init-groups \
      munged --foreground --socket=/tmp/munge/run/munge.socket.2 \
      --pid-file=/tmp/munge/run/munged.pid --log-file=/tmp/munge/log/munged.log \
      --seed-file=/tmp/munge/lib/munged.seed
  done
  for node in "${hosts[@]}"; do wait_file "$node" munge/run/munge.socket.2; done
  start_logged head slurm/slurmctld.out slurmctld -D -i
  wait_port head 6817
  for node in "${hosts[@]:1}"; do start_logged "$node" slurm/slurmd.out slurmd -D; done
  for node in "${hosts[@]:1}"; do wait_port "$node" 6818; done
  # Every node registered and idle, as the controller sees it.
  bash "$self" exec "$state" head bash -c '
    for i in $(seq 120); do
      [[ $(sinfo -h -N -t idle -o %N | sort -u | wc -l) == "$1" ]] && exit 0
      sleep 0.5
    done
    sinfo -N >&2; echo "Slurm nodes not idle after 60 s" >&2; exit 1' _ "$WORKERS"
}

slurm_conf() {  # NODELIST: the cluster's slurm.conf (Slurm 22.05)
  local i
  cat <<EOF
# Made by cluster/netns_cluster.sh: the controller on hgs-head, one CPU per worker node.
ClusterName=hgs$ID
SlurmctldHost=hgs-head($ADDR_head)
SlurmctldPort=6817
SlurmdPort=6818
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=/tmp/munge/run/munge.socket.2
StateSaveLocation=/tmp/slurm/state
SlurmdSpoolDir=/tmp/slurm/spool
SlurmctldPidFile=/tmp/slurm/slurmctld.pid
SlurmdPidFile=/tmp/slurm/slurmd.pid
SlurmctldLogFile=/tmp/slurm/slurmctld.log
SlurmdLogFile=/tmp/slurm/slurmd.log
# No cgroups in a container: a step's processes are tracked by ancestry; tasks are not bound.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
# The node has the CPUs named here, whatever the machine has.
SlurmdParameters=config_overrides
KillWait=10
MinJobAge=3600
NodeName=DEFAULT CPUs=1 RealMemory=1000 State=UNKNOWN
EOF
  for i in $(seq "$WORKERS"); do echo "NodeName=hgs-w$i NodeAddr=$(addr_of "w$i")"; done
  echo "PartitionName=main Nodes=$1 Default=YES MaxTime=INFINITE State=UP"
}

wait_file() {  # node, path on its disk: until it is there (60 s at most)
  local i
  for i in $(seq 120); do
    if [[ -e $state/disk/$1/$2 ]]; then return 0; fi
    sleep 0.5
  done
  echo "$0: no $2 on $1 after 60 s" >&2
  return 1
}

# ------------------------------------------------------------------------------- a host

run_on() {  # STATE NODE CMD...: enter NODE's network namespace and a mount namespace of its own
  load "$1"; local node=$2; shift 2
  [[ " $NODES " == *" $node "* ]] || { echo "$0: no node $node (have: $NODES)" >&2; exit 2; }
  (($#)) || usage
  exec ip netns exec "$(ns_of "$node")" unshare --mount --uts --propagation private -- \
    /bin/bash "$self" _inside "$state" "$node" "$@"
}

inside() {  # STATE NODE CMD... (in the new mount namespace): the host's own disk, then CMD
  load "$1"; local node=$2; shift 2
  local disk=$state/disk/$node keep=() k
  # The code must stay visible even where it lives under /tmp (a CI clone, say).
  for k in "$REPO" "$PYPREFIX"; do
    if [[ $k/ == /tmp/* ]]; then keep+=("$k"); mkdir -p "$disk/.code$k"; mount --bind "$k" "$disk/.code$k"; fi
  done
  # The cluster's names; with Slurm, the shared home and the host's own /etc/slurm, /etc/munge
  # (bound before /tmp changes: STATE may be under /tmp).
  if [[ -f $state/hosts ]]; then mount --bind "$state/hosts" /etc/hosts; fi
  local home=/tmp/home
  if [[ ${SLURM:-0} == 1 && -d $disk/etc/slurm ]]; then
    mount --bind "$state/home" /home
    home=/home/hgs
    for k in slurm munge; do mount --bind "$disk/etc/$k" "/etc/$k"; done
  fi
  mount --rbind "$disk" /tmp
  for k in "${keep[@]}"; do mkdir -p "$k"; mount --bind "/tmp/.code$k" "$k"; done
  # The holding place would be a second, writable way in: gone once the code is in place.
  for k in "${keep[@]}"; do
    if mountpoint -q "/tmp/.code$k"; then umount -R "/tmp/.code$k"; fi
  done
  echo "hgs-$node" > /proc/sys/kernel/hostname
  mkdir -p /tmp/shm /tmp/home /tmp/work
  mount --bind /tmp/shm /dev/shm
  # The other hosts' disks (and this one's own path) are out of sight.
  if [[ -e $state ]]; then mount -t tmpfs -o size=16k,mode=000 hidden "$state"; fi
  for k in "$REPO" "$PYPREFIX"; do
    mountpoint -q "$k" || mount --bind "$k" "$k"
    mount -o remount,bind,ro "$k"
  done
  local token=()
  [[ ! -f /tmp/ray-token ]] || token=(RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=/tmp/ray-token)
  cd /tmp/work
  exec env -i PATH="$PYPREFIX/bin:/usr/sbin:/usr/bin:/sbin:/bin" HOME="$home" TMPDIR=/tmp \
    LANG=C.UTF-8 PYTHONPATH="$REPO" PYTHONDONTWRITEBYTECODE=1 OMP_NUM_THREADS=1 \
    RAY_USAGE_STATS_ENABLED=0 RAY_health_check_period_ms=1000 \
    RAY_health_check_timeout_ms=5000 RAY_health_check_failure_threshold=5 \
    AWS_ACCESS_KEY_ID=hgsearch-test AWS_SECRET_ACCESS_KEY=hgsearch-test \
    AWS_DEFAULT_REGION=us-east-1 AWS_ENDPOINT_URL="$STORE_URL" AWS_EC2_METADATA_DISABLED=true \
    HGSEARCH_NODE="$node" "${token[@]}" "$@"
}

# ---------------------------------------------------------------------------- teardown

kill_node() {  # node: SIGKILL everything in its namespace, as a power cut would
  local ns pids
  ns=$(ns_of "$1")
  pids=$(ip netns pids "$ns" 2>/dev/null || true)
  [[ -z $pids ]] || kill -KILL $pids 2>/dev/null || true
}

down_loaded() {  # end every process in our namespaces, then the namespaces
  local names ns
  names=$(ip netns list | awk -v p="hgs-$ID-" 'index($1, p) == 1 {print $1}')
  end_processes $names
  for ns in $names; do ip netns del "$ns"; done
}

end_processes() {  # namespace...: TERM every process in them, KILL what is left after 5 s
  local names=$* ns pids i
  for ns in $names; do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [[ -z $pids ]] || kill -TERM $pids 2>/dev/null || true
  done
  for i in $(seq 40); do
    pids=$(for ns in $names; do ip netns pids "$ns" 2>/dev/null || true; done)
    [[ -n $pids ]] || break
    ((i < 20)) || kill -KILL $pids 2>/dev/null || true
    sleep 0.25
  done
}

case ${1:-} in
  up) (($# >= 2)) || usage; up "$2" "${3:-2}" ;;
  exec) (($# >= 4)) || usage; run_on "${@:2}" ;;
  _inside) inside "${@:2}" ;;
  kill) (($# == 3)) || usage; load "$2"; kill_node "$3" ;;
  stop) (($# == 3)) || usage; load "$2"; end_processes "$(ns_of "$3")" ;;
  down) (($# == 2)) || usage; load "$2"; down_loaded ;;
  *) usage ;;
esac
