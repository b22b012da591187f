#!/usr/bin/env bash
# Serves TensorBoard on a movinet-train --model_dir, local or gs://.
#
# Usage: launch/tensorboard.sh MODEL_DIR [--port=6006] [--bind_all] [--dry_run]
#
# It runs `tensorboard --logdir=MODEL_DIR --port=PORT`; open
# http://localhost:PORT. --bind_all serves on every network interface (for a
# remote machine; or keep the default and use `ssh -L PORT:localhost:PORT`).
# --dry_run prints the command only.
#
# Examples:
#   launch/tensorboard.sh runs/quickstart
#   launch/tensorboard.sh gs://BUCKET/runs/ucf101_a0_tpu --port=6007
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

model_dir='' port=6006 extra=() dry_run=false
for arg in "$@"; do
  case $arg in
    -h|--help) usage; exit 0 ;;
    --port=*) port=${arg#*=} ;;
    --bind_all) extra+=(--bind_all) ;;
    --dry_run) dry_run=true ;;
    -*) die "unknown argument $(q "$arg") (see --help)" ;;
    *) [[ -z $model_dir ]] || die "one MODEL_DIR only, got $(q "$model_dir" "$arg")"
       model_dir=$arg ;;
  esac
done
[[ -n $model_dir ]] || die "missing MODEL_DIR (see --help)"
[[ $port =~ ^[0-9]+$ ]] || die "--port=$port is not a port number"
$dry_run || command -v tensorboard >/dev/null ||
  die "tensorboard not found on PATH; run 'pip install -e .' first"
if [[ $model_dir != *://* && ! -d $model_dir ]]; then
  echo "tensorboard.sh: $model_dir does not exist (yet); TensorBoard waits for it" >&2
fi

cmd=(tensorboard --logdir="$model_dir" --port="$port" "${extra[@]}")
echo "+ $(q "${cmd[@]}")"
$dry_run && exit 0
exec "${cmd[@]}"
