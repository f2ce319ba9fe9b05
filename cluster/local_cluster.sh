#!/usr/bin/env bash
# A multi-node Ray cluster on this one machine, to try `hgsearch sweep --address` without one:
# a head and N worker nodes, each a separate `ray start` with its own CPUs, all bound to
# 127.0.0.1, no dashboard, token authentication on.
#
#   cluster/local_cluster.sh start [N]     # head + N workers (default 2), CPUS each (default 1)
#   eval "$(cluster/local_cluster.sh env)" # this shell: the token and address the nodes use
#   hgsearch sweep search_spaces/demo.yaml --address auto --name try --results /tmp/try
#   cluster/local_cluster.sh stop          # ends the nodes this script started, nothing else
#
# The process-group id of every node is recorded in $STATE/pids; `stop` signals those groups
# only (each `ray start --block` runs in a session of its own), so another Ray on the machine
# is left alone. Logs: $STATE/<node>.log. Settings: CPUS, PORT (GCS, default 6390), STATE.
set -euo pipefail

state=${STATE:-/tmp/hgsearch-cluster-$(id -un)}
port=${PORT:-6390}
cpus=${CPUS:-1}
ray_bin=${RAY:-ray}

usage() { echo "usage: $0 start [N] | env | stop" >&2; exit 2; }

env_lines() {
  echo "export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$state/token RAY_ADDRESS=127.0.0.1:$port"
}

# One node: its own session (setsid) so that its whole process group can be ended by id.
start_node() {  # name, then `ray start` arguments
  local name=$1; shift
  setsid "$ray_bin" start --block --node-ip-address=127.0.0.1 --num-cpus="$cpus" --num-gpus=0 \
    --resources="{\"$name\": 1}" "$@" >"$state/$name.log" 2>&1 < /dev/null &
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
  (umask 077 && python -c 'import secrets; print(secrets.token_hex(32))' > "$state/token")
  eval "$(env_lines)"
  export RAY_AUTH_MODE RAY_AUTH_TOKEN_PATH
  unset RAY_ADDRESS    # the head must not try to join itself
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

# Wait until the cluster reports `n` alive nodes (or give up after a minute).
wait_for() {
  local n=$1
  for _ in $(seq 60); do
    if python - "$n" "127.0.0.1:$port" <<'EOF' 2>/dev/null; then return 0; fi
import sys, ray
ray.init(address=sys.argv[2], logging_level="ERROR")
sys.exit(0 if sum(node["Alive"] for node in ray.nodes()) >= int(sys.argv[1]) else 1)
EOF
    sleep 1
  done
  echo "$0: fewer than $n nodes after 60 s; see $state/*.log" >&2
  exit 1
}

stop() {
  [[ -s $state/pids ]] || { echo "$0: nothing recorded in $state/pids" >&2; return 0; }
  local pid name
  # Workers first, the head last: nodes that lose their head only log errors.
  tac "$state/pids" | while read -r pid name; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM -- "-$pid" 2>/dev/null || true
      for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -KILL -- "-$pid" 2>/dev/null || true
      echo "stopped $name (process group $pid)"
    fi
  done
  rm -f "$state/pids" "$state/token"
}

case ${1:-} in
  start) start "${2:-2}" ;;
  env) env_lines ;;
  stop) stop ;;
  *) usage ;;
esac
