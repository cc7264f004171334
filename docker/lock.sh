#!/usr/bin/env bash
# Regenerate the image's lock files (run from anywhere; needs uv==0.13.9 and PyPI).
#   docker/lock.sh                 # keep the current --exclude-newer date (no version changes)
#   docker/lock.sh 2027-01-01      # move the date: picks up newer releases of unpinned deps
# Resolution is for the image's platform (CPython 3.11, x86_64 manylinux_2_28), not this host's,
# and nothing is downloaded. tests/repo/test_docker_policy.py re-runs the same command and diffs.
# docker/torch-cpu.lock is written by hand (see its header); docker/deepspeed.lock comes from
# docker/deepspeed.in.
set -euo pipefail
cd "$(dirname "$0")/.."
cur=
if [ -f docker/requirements-cpu.lock ]; then
  cur=$(sed -n 's/.*--exclude-newer \([^ ]*\).*/\1/p' docker/requirements-cpu.lock | head -1)
fi
date=${1:-${cur:-}}
[ -n "$date" ] || { echo "usage: docker/lock.sh YYYY-MM-DD (no lock yet to take the date from)" >&2; exit 2; }
case "$date" in *T*) ;; *) date="${date}T00:00:00Z" ;; esac
# Each lock is resolved from scratch into a temporary file and then renamed into place: uv treats
# an existing output file as preferences, so compiling over the old lock would keep its versions
# even where a fresh resolution (what tests/repo/test_docker_policy.py checks) picks others. The header
# records the canonical command.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
lock() {  # lock <in> <out> [extra uv flags...]
  local in=$1 out=$2; shift 2
  local args=(--generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 --exclude-newer "$date" "$@")
  uv pip compile "$in" -o "$tmp/$(basename "$out")" --quiet "${args[@]}" \
    --custom-compile-command "uv pip compile $in -o $out ${args[*]}"
  mv "$tmp/$(basename "$out")" "$out"
}
for v in cpu gpu; do
  lock "docker/requirements-$v.in" "docker/requirements-$v.lock"
done
# deepspeed alone (its requirements are in both locks above through deepspeed-requires.in); --no-deps
# because resolving its requirements would build the sdist, whose setup.py imports torch
lock docker/deepspeed.in docker/deepspeed.lock --no-deps
echo "locks written with --exclude-newer $date"
