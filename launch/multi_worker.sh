#!/usr/bin/env bash
# Trains with --strategy=multi_worker: writes each worker's TF_CONFIG and
# starts movinet-train with it.
#
# Usage: launch/multi_worker.sh --local=N [--log_dir=DIR] [--dry_run] -- <flags>
#        launch/multi_worker.sh --workers=HOST:PORT,HOST:PORT,... --index=I
#          [--dry_run] -- <flags>
#
# --local=N starts N workers on 127.0.0.1 (free ports), each logging to
# DIR/worker-I.log (DIR defaults to a new temporary directory); it streams
# worker 0's log, waits for all and, if one fails, stops the others and exits
# with its status. --workers/--index (run once on every host, same --workers,
# its own --index) sets TF_CONFIG for this host and execs movinet-train.
# Every worker runs `movinet-train --strategy=multi_worker <flags>`.
# --dry_run prints the commands and TF_CONFIGs without running anything.
#
# Examples:
#   launch/multi_worker.sh --local=2 -- --model_dir=/tmp/mw
#   launch/multi_worker.sh --workers=10.0.0.1:2222,10.0.0.2:2222 --index=0 \
#     -- --gin_file=ucf101_a0_transfer.gin --model_dir=gs://BUCKET/runs/mw
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
tf_config() {  # tf_config INDEX HOST:PORT...: the TF_CONFIG of worker INDEX
  local index=$1; shift
  local workers; workers=$(printf ',"%s"' "$@")
  echo "{\"cluster\":{\"worker\":[${workers#,}]},\"task\":{\"type\":\"worker\",\"index\":$index}}"
}

local_n='' workers='' index='' log_dir='' dry_run=false
while (($#)); do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --local=*) local_n=${1#*=} ;;
    --workers=*) workers=${1#*=} ;;
    --index=*) index=${1#*=} ;;
    --log_dir=*) log_dir=${1#*=} ;;
    --dry_run) dry_run=true ;;
    --) shift; break ;;
    *) die "unknown argument $(q "$1") (movinet-train flags go after --; see --help)" ;;
  esac
  shift
done
flags=("$@")
if [[ -n $local_n ]]; then
  [[ -z $workers$index ]] || die "--local goes without --workers and --index"
  [[ $local_n =~ ^[1-9][0-9]*$ ]] || die "--local=$local_n is not a number of workers"
elif [[ -n $workers ]]; then
  IFS=, read -ra hosts <<< "$workers"
  for host in "${hosts[@]}"; do
    [[ $host =~ ^[A-Za-z0-9._-]+:[0-9]+$ ]] || die "--workers: $(q "$host") is not HOST:PORT"
  done
  [[ -n $index ]] || die "missing --index (this host's position in --workers)"
  if [[ ! $index =~ ^[0-9]+$ ]] || ((index >= ${#hosts[@]})); then
    die "--index=$index is not in 0..$((${#hosts[@]} - 1))"
  fi
else
  die "missing --local=N or --workers=HOST:PORT,... (see --help)"
fi
has_flag --model_dir "${flags[@]}" || die "missing --model_dir after -- (see --help)"
$dry_run || command -v movinet-train >/dev/null ||
  die "movinet-train not found on PATH; run 'pip install -e .' first"
train=(movinet-train --strategy=multi_worker "${flags[@]}")

if [[ -n $workers ]]; then  # cluster mode: this host's worker
  TF_CONFIG=$(tf_config "$index" "${hosts[@]}")
  echo "+ TF_CONFIG=$(q "$TF_CONFIG") $(q "${train[@]}")"
  $dry_run && exit 0
  export TF_CONFIG
  exec "${train[@]}"
fi

command -v python3 >/dev/null || die "python3 not found on PATH (it picks free ports)"
read -ra ports <<< "$(python3 -c 'import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))' "$local_n")"
hosts=("${ports[@]/#/127.0.0.1:}")
if [[ -z $log_dir ]]; then
  log_dir=${TMPDIR:-/tmp}/movinet-multi-worker-$$
fi
$dry_run || mkdir -p "$log_dir"

pids=()
stop() {  # Stops the workers still running (and the log streaming).
  local pid
  for pid in "${pids[@]}" ${tail_pid-}; do kill "$pid" 2>/dev/null || true; done
}
trap stop EXIT
trap 'exit 130' INT TERM
for ((i = 0; i < local_n; i++)); do
  config=$(tf_config "$i" "${hosts[@]}")
  log=$log_dir/worker-$i.log
  echo "+ TF_CONFIG=$(q "$config") $(q "${train[@]}") > $(q "$log") 2>&1 &"
  $dry_run && continue
  TF_CONFIG=$config "${train[@]}" > "$log" 2>&1 &
  pids+=($!)
done
$dry_run && exit 0
echo "# streaming worker 0; all logs in $log_dir"
tail -n +1 -F --pid="${pids[0]}" "$log_dir/worker-0.log" &
tail_pid=$!

# Polls the workers: the first one to fail stops the others.
running=${#pids[@]}
while ((running)); do
  sleep 0.2
  for i in "${!pids[@]}"; do
    pid=${pids[i]}
    if [[ -z $pid ]] || kill -0 "$pid" 2>/dev/null; then continue; fi
    status=0; wait "$pid" || status=$?
    pids[i]=''; running=$((running - 1))
    if ((status)); then
      echo "multi_worker.sh: worker $i exited with status $status" \
        "(log: $log_dir/worker-$i.log); stopping the others" >&2
      exit "$status"
    fi
  done
done
wait "$tail_pid" || true
echo "# all $local_n workers done; logs in $log_dir"
