#!/usr/bin/env bash
# Runs one command under mpirun with a watchdog; used by repshape_mpi_test() in tests/CMakeLists.txt.
#
#   mpirun_test.sh <np> <timeout-seconds> <exe> [args...]
#
# Exit status: that of mpirun (non-zero when any rank failed), 124 when the watchdog fired.
# `--oversubscribe` lets np exceed the cores of a CI runner; `--bind-to none` avoids pinning every
# rank to one core; `btl self,vader` keeps Open MPI on shared memory (no network probing in
# containers). REPSHAPE_MPIRUN_EXTRA adds flags (e.g. "--mca btl_vader_single_copy_mechanism none").
set -u
if (($# < 3)); then
  echo "usage: $0 <np> <timeout-seconds> <exe> [args...]" >&2
  exit 2
fi
np=$1
limit=$2
shift 2
root_flag=()
[ "$(id -u)" -eq 0 ] && root_flag=(--allow-run-as-root)
# shellcheck disable=SC2086
exec timeout --kill-after=10 "$limit" mpirun -np "$np" --oversubscribe "${root_flag[@]}" \
  --mca btl self,vader --bind-to none ${REPSHAPE_MPIRUN_EXTRA:-} "$@"
