#!/usr/bin/env bash
# A multi-node Ray cluster on this one machine, to try `hgsearch sweep --address` without one:
# a head and N worker nodes, each a separate `ray start` with its own CPUs, every socket on
# 127.0.0.1, no dashboard, token authentication on (RAY_AUTH_MODE=token, a fresh token).
#
#   cluster/local_cluster.sh start [N]     # head + N workers (default 2), CPUS each (default 1)
#   eval "$(cluster/local_cluster.sh env)" # this shell: the token and address the nodes use
#   hgsearch sweep search_spaces/demo.yaml --address auto --name try --results /tmp/try
#   cluster/local_cluster.sh stop          # ends the nodes this script started, nothing else
#
# Each node is `ray start --block` run through cluster/ray_loopback.py, which keeps
# --node-ip-address=127.0.0.1 as given (plain `ray start` on Linux swaps it for the LAN address,
# and its servers then listen on every interface: see that file). A driver needs
# RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 to find such a cluster on loopback; `env` exports it.
# Each node runs in a session of its own, whose id (its first process) is recorded in
# $STATE/pids; `stop` signals the processes of those sessions only (Ray's workers get process
# groups of their own, but stay in the node's session), so another Ray on the machine is left
# alone. Logs: $STATE/<node>.log. Settings: CPUS, PORT (GCS, default 6390; each node also
# uses PORT+100.. for its agents), STATE, PYTHON (default python3; the one Ray is installed in),
# WAIT_S (how long `start` waits for the nodes, default 120).
set -euo pipefail

state=${STATE:-/tmp/hgsearch-cluster-$(id -un)}
port=${PORT:-6390}
cpus=${CPUS:-1}
python=${PYTHON:-python3}
loopback=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/ray_loopback.py

usage() { echo "usage: $0 start [N] | env | stop" >&2; exit 2; }

env_lines() {
  echo "export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$state/token RAY_ADDRESS=127.0.0.1:$port" \
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0"
}

# One node: a session of its own (setsid), so that all its processes can be found by its id.
start_node() {  # name, then `ray start` arguments
  local name=$1; shift
  setsid "$python" "$loopback" start --block --node-ip-address=127.0.0.1 --num-cpus="$cpus" \
    --num-gpus=0 --resources="{\"$name\": 1}" "$@" >"$state/$name.log" 2>&1 < /dev/null &
  echo "$! $name" >> "$state/pids"
}

start() {
  local workers=${1:-2}
  [[ $workers =~ ^[0-9]+$ ]] || usage
  if [[ -s $state/pids ]]; then
    echo "$0: a cluster is recorded in $state/pids; stop it first" >&2; exit 1
  fi
  mkdir -p "$state"
  chmod 700 "$state"
  # A fresh token, readable by this user only; every node and the driver read it.
  (umask 077 && "$python" -c 'import secrets; print(secrets.token_hex(32))' > "$state/token")
  # Token authentication set here, not left to Ray's default.
  export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$state/token
  unset RAY_ADDRESS RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER   # nodes: no joining itself; no refusal
  # Nodes on one machine need distinct agent and metrics ports: 100 above PORT per node.
  local base=$((port + 100))
  start_node head --head --port="$port" --include-dashboard=false \
    --dashboard-agent-listen-port=$((base)) --dashboard-agent-grpc-port=$((base + 1)) \
    --metrics-export-port=$((base + 2)) --runtime-env-agent-port=$((base + 3))
  wait_for 1
  for i in $(seq 1 "$workers"); do
    base=$((port + 100 + 10 * i))
    start_node "worker$i" --address="127.0.0.1:$port" \
      --dashboard-agent-listen-port=$((base)) --dashboard-agent-grpc-port=$((base + 1)) \
      --metrics-export-port=$((base + 2)) --runtime-env-agent-port=$((base + 3))
  done
  wait_for $((workers + 1))
  echo "started a head and $workers worker node(s) at 127.0.0.1:$port ($cpus CPU each)"
  echo "in your shell: eval \"\$($0 env)\""
}

# A driver's Python: it must see the cluster on loopback (see cluster/ray_loopback.py).
driver() { RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 "$python" "$@"; }

# Wait until the cluster reports `n` alive nodes; give up after WAIT_S (default 120) seconds,
# or at once when a node's `ray start` has exited (it logs why).
wait_for() {
  local n=$1 deadline=$((SECONDS + ${WAIT_S:-120})) sid name
  while ((SECONDS < deadline)); do
    while read -r sid name; do
      if ! kill -0 "$sid" 2>/dev/null; then
        echo "$0: node $name exited; see $state/$name.log" >&2; exit 1
      fi
    done < "$state/pids"
    if driver - "$n" "127.0.0.1:$port" <<'EOF' 2>/dev/null; then return 0; fi
import sys, ray
ray.init(address=sys.argv[2], logging_level="ERROR")
sys.exit(0 if sum(node["Alive"] for node in ray.nodes()) >= int(sys.argv[1]) else 1)
EOF
    sleep 1
  done
  echo "$0: fewer than $n nodes after ${WAIT_S:-120} s; see $state/*.log" >&2
  exit 1
}

session_pids() {  # session id: the live processes in that session (a zombie is dead already)
  ps -eo pid=,sid=,stat= | awk -v s="$1" '$2 == s && $3 !~ /^Z/ {print $1}'
}

stop() {
  [[ -s $state/pids ]] || { echo "$0: nothing recorded in $state/pids" >&2; return 0; }
  local sid name pids
  # Workers first, the head last: nodes that lose their head only log errors.
  tac "$state/pids" | while read -r sid name; do
    pids=$(session_pids "$sid")
    [[ -n $pids ]] || continue
    kill -TERM $pids 2>/dev/null || true
    # 10 s to end, then KILL; return once they are gone (a killed process takes a moment).
    for i in $(seq 40); do
      pids=$(session_pids "$sid")
      [[ -n $pids ]] || break
      ((i <= 20)) || kill -KILL $pids 2>/dev/null || true
      sleep 0.5
    done
    echo "stopped $name (session $sid)"
  done
  rm -f "$state/pids" "$state/token"
}

case ${1:-} in
  start) start "${2:-2}" ;;
  env) env_lines ;;
  stop) stop ;;
  *) usage ;;
esac
