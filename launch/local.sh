#!/usr/bin/env bash
# Trains on this machine with all its GPUs.
#
# Usage: launch/local.sh [--dry_run] <movinet-train flags>
#
# With 2+ GPUs (counted with nvidia-smi) it runs
#   movinet-train --strategy=mirrored <flags> --gin_file=platforms/multi_gpu.gin
# (the platform file goes after the experiment's, as gin/platforms/ asks);
# with 0 or 1 GPU, or no nvidia-smi, `movinet-train --strategy=auto <flags>`.
# A --strategy among <flags> wins. --dry_run prints the command only.
#
# Examples:
#   launch/local.sh --model_dir=runs/quickstart
#   launch/local.sh --gin_file=ucf101_a0_transfer.gin \
#     --gin_bindings="DATA_DIR='data/ucf101_10'" --model_dir=runs/ucf101_a0
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

dry_run=false
flags=()
for arg in "$@"; do
  case $arg in
    -h|--help) usage; exit 0 ;;
    --dry_run) dry_run=true ;;
    *) flags+=("$arg") ;;
  esac
done
has_flag --model_dir "${flags[@]}" || die "missing --model_dir (see --help)"

$dry_run || command -v movinet-train >/dev/null ||
  die "movinet-train not found on PATH; run 'pip install -e .' first"

gpus=0
if command -v nvidia-smi >/dev/null; then
  gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
fi
if ((gpus > 1)); then
  # Without a --gin_file of its own, movinet-train would drop its default.
  has_flag --gin_file "${flags[@]}" || flags+=(--gin_file=quickstart.gin)
  cmd=(movinet-train --strategy=mirrored "${flags[@]}" --gin_file=platforms/multi_gpu.gin)
else
  cmd=(movinet-train --strategy=auto "${flags[@]}")
fi

echo "# $gpus GPU(s)"
echo "+ $(q "${cmd[@]}")"
$dry_run && exit 0
exec "${cmd[@]}"
