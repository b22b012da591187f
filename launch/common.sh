# Helpers sourced by the launch scripts (not run on its own).
# shellcheck shell=bash

# Prints the calling script's header comment (its usage and examples).
usage() { sed -n '2,/^set -euo/{/^set/d;s/^# \{0,1\}//;p}' "$0"; }
# One clear line on stderr, exit status 2.
die() { echo "$(basename "$0"): $*" >&2; exit 2; }
q() {  # Quotes each argument for a POSIX shell, leaving plain words as they are.
  local a out=()
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then out+=("$a")
    else out+=("'${a//\'/\'\\\'\'}'"); fi
  done
  echo "${out[*]}"
}
has_flag() {  # has_flag --name ARGS...: whether ARGS set --name
  local name=$1 a; shift
  for a in "$@"; do [[ $a == "$name" || $a == "$name="* ]] && return 0; done
  return 1
}
