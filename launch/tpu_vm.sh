#!/usr/bin/env bash
# Trains on a Cloud TPU VM: creates it, installs this package on it, starts
# training detached, streams its log and, with --delete, deletes the VM.
#
# Usage: launch/tpu_vm.sh --tpu_name=NAME --zone=ZONE --accelerator_type=TYPE
#          [--version=tpu-ubuntu2204-base] [--project=PROJECT]
#          [--repo=GIT_URL|LOCAL_PATH] [--delete] [--dry_run]
#          -- <movinet-train flags>
#        launch/tpu_vm.sh --tpu_name=NAME --zone=ZONE --delete   (delete only)
#
# On every TPU host it runs, in ~/movinet-trainer and detached (setsid nohup),
#   movinet-train --strategy=tpu --tpu=local <flags> --gin_file=platforms/tpu.gin
# logging to ~/movinet-train.log, then follows worker 0's log until training
# ends (Ctrl-C stops the streaming only, unless --delete). --repo defaults to
# this checkout, copied without .git, ./data and ./runs; a URL is cloned.
# --delete deletes the VM when the script exits, however it exits.
# --dry_run prints every command without running any (no gcloud needed).
#
# Examples:
#   launch/tpu_vm.sh --tpu_name=movinet --zone=us-central2-b \
#     --accelerator_type=v4-8 --delete -- --gin_file=ucf101_a0_transfer.gin \
#     --gin_bindings="DATA_DIR='gs://BUCKET/ucf101_10'" \
#     --model_dir=gs://BUCKET/runs/ucf101_a0_tpu
#   launch/tpu_vm.sh --tpu_name=movinet --zone=us-central2-b --delete
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run() { echo "+ $(q "$@")"; $dry_run || "$@"; }

name='' zone='' accelerator_type='' version=tpu-ubuntu2204-base project=''
repo=$(cd "${BASH_SOURCE[0]%/*}/.." && pwd)
delete=false dry_run=false
while (($#)); do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --tpu_name=*) name=${1#*=} ;;
    --zone=*) zone=${1#*=} ;;
    --accelerator_type=*) accelerator_type=${1#*=} ;;
    --version=*) version=${1#*=} ;;
    --project=*) project=${1#*=} ;;
    --repo=*) repo=${1#*=} ;;
    --delete) delete=true ;;
    --dry_run) dry_run=true ;;
    --) shift; break ;;
    *) die "unknown argument $(q "$1") (movinet-train flags go after --; see --help)" ;;
  esac
  shift
done
flags=("$@")
[[ -n $name ]] || die "missing --tpu_name (see --help)"
[[ -n $zone ]] || die "missing --zone (see --help)"
if ((${#flags[@]})) || ! $delete; then
  [[ -n $accelerator_type ]] || die "missing --accelerator_type, e.g. v4-8 (see --help)"
  has_flag --model_dir "${flags[@]}" || die "missing --model_dir after -- (see --help)"
fi
is_url=false
[[ $repo == *://* || $repo == git@* ]] && is_url=true
$is_url || [[ -d $repo ]] || die "--repo=$repo is neither a URL nor a directory"
$dry_run || command -v gcloud >/dev/null ||
  die "gcloud not found on PATH; install the Google Cloud CLI (or use --dry_run)"

where=(--zone="$zone")
[[ -n $project ]] && where+=(--project="$project")
tpu_vm=(gcloud compute tpus tpu-vm)
delete_vm() { run "${tpu_vm[@]}" delete "$name" "${where[@]}" --quiet; }
if $delete; then trap delete_vm EXIT; fi
((${#flags[@]})) || exit 0  # delete only

run "${tpu_vm[@]}" create "$name" "${where[@]}" \
  --accelerator-type="$accelerator_type" --version="$version"

dir=movinet-trainer  # in the remote home directory, where ssh starts
if $is_url; then
  fetch="[ -d $dir ] || git clone --depth=1 $(q "$repo") $dir"
else
  tarball=${TMPDIR:-/tmp}/movinet-trainer-$$.tar.gz
  run tar -czf "$tarball" --exclude-vcs --exclude='*.egg-info' \
    --exclude=__pycache__ --exclude=./data --exclude=./runs -C "$repo" .
  run "${tpu_vm[@]}" scp "$tarball" "$name:movinet-trainer.tar.gz" \
    "${where[@]}" --worker=all
  run rm -f "$tarball"
  fetch="mkdir -p $dir && tar -xzf ~/movinet-trainer.tar.gz -C $dir"
fi
run "${tpu_vm[@]}" ssh "$name" "${where[@]}" --worker=all \
  --command="$fetch && cd $dir && python3 -m pip install -e ."

# Without a --gin_file of its own, movinet-train would drop its default.
has_flag --gin_file "${flags[@]}" || flags+=(--gin_file=quickstart.gin)
train=(movinet-train --strategy=tpu --tpu=local "${flags[@]}"
       --gin_file=platforms/tpu.gin)
run "${tpu_vm[@]}" ssh "$name" "${where[@]}" --worker=all \
  --command="cd $dir && export PATH=\"\$HOME/.local/bin:\$PATH\" &&\
 { setsid nohup $(q "${train[@]}") > ~/movinet-train.log 2>&1 < /dev/null &\
 echo \$! > ~/movinet-train.pid; }"
# shellcheck disable=SC2016  # $(...) expands on the VM
run "${tpu_vm[@]}" ssh "$name" "${where[@]}" --worker=0 \
  --command='tail -n +1 -F --pid="$(cat ~/movinet-train.pid)" ~/movinet-train.log'
