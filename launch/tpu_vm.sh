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
# On every TPU host it installs Python 3.11, TensorFlow's TPU build and this
# package into the venv ~/movinet-venv, then runs, in ~/movinet-trainer and
# detached (setsid nohup), that venv's
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

# The install, on every host, into the venv ~/movinet-venv.
# Python: the base image (tpu-ubuntu2204-base, Ubuntu 22.04) has Python 3.10,
# the tested Python is 3.11 (constraints.txt; tensorflow-tpu 2.20.0 has a
# cp311 wheel). uv, pip-installed from
# PyPI (pinned), downloads a prebuilt CPython 3.11 into ~/.local/share/uv and
# makes the venv from it. Chosen over apt + the deadsnakes PPA: no sudo, no
# wait on the dpkg lock unattended-upgrades holds on a freshly booted VM, no
# third-party apt source, and uv also does the exclusion below.
# TensorFlow: a TPU VM needs the TPU build, the tensorflow-tpu distribution
# (the same `tensorflow` module, plus a libtpu dependency). setup.py asks for
# `tensorflow`; installing both would put two distributions into one
# site-packages/tensorflow. So `tensorflow` is excluded from the resolution
# (uv pip install --excludes, read from stdin) and tensorflow-tpu of the same
# version replaces it, resolved together with the package's other pins.
# Sources: https://cloud.google.com/tpu/docs/runtimes (tpu-ubuntu2204-base is
# the image for v4 and older; TPU builds of TF pair with a libtpu version);
# Python 3.10.12 on a v4-8 VM of that image: github.com/pytorch/xla/issues/7731;
# tensorflow-tpu 2.20.0 (cp311 wheel, requires libtpu~=0.0.14) and libtpu
# 0.0.14: their PyPI metadata. Google's documented command adds
#   -f https://storage.googleapis.com/libtpu-tf-releases/index.html
# which holds the libtpu builds of TF 2.18 and older; from 2.19 on libtpu comes
# from PyPI, so that index is left out here. libtpu is pinned to 0.0.14, the
# floor tensorflow-tpu 2.20.0 declares, not the newest 0.0.x the range allows.
# shellcheck disable=SC2016  # $HOME expands on the VM
venv='$HOME/movinet-venv'
tpu_requirements=(tensorflow-tpu==2.20.0 libtpu==0.0.14)
install=(
  "$fetch"
  "cd $dir"
  "python3 -m pip install --user uv==0.13.9"  # a uv with pip install --excludes
  "python3 -m uv venv --python=3.11 --managed-python --allow-existing \"$venv\""
  "echo tensorflow | python3 -m uv pip install --python=\"$venv\" --excludes=- -e . $(q "${tpu_requirements[@]}")"
)
printf -v install_cmd ' && %s' "${install[@]}"
run "${tpu_vm[@]}" ssh "$name" "${where[@]}" --worker=all \
  --command="${install_cmd# && }"

# Without a --gin_file of its own, movinet-train would drop its default.
has_flag --gin_file "${flags[@]}" || flags+=(--gin_file=quickstart.gin)
train=(movinet-train --strategy=tpu --tpu=local "${flags[@]}"
       --gin_file=platforms/tpu.gin)
run "${tpu_vm[@]}" ssh "$name" "${where[@]}" --worker=all \
  --command="cd $dir && export PATH=\"$venv/bin:\$PATH\" &&\
 { setsid nohup $(q "${train[@]}") > ~/movinet-train.log 2>&1 < /dev/null &\
 echo \$! > ~/movinet-train.pid; }"
# shellcheck disable=SC2016  # $(...) expands on the VM
run "${tpu_vm[@]}" ssh "$name" "${where[@]}" --worker=0 \
  --command='tail -n +1 -F --pid="$(cat ~/movinet-train.pid)" ~/movinet-train.log'
