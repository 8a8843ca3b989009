#!/usr/bin/env bash
# Failure paths under real mpirun: a crashed or stalled rank must end EVERY rank non-zero within
# the collective deadline, with stderr naming the operation and the rank.
#
#   fault_test.sh <mpirun_test.sh> <fault_worker> <case>
#   case: healthy | crash | crash-no-teardown | stall
set -u
launcher=$1
worker=$2
case_name=$3
deadline=4        # seconds, --timeout of the worker
np=3
log=$(mktemp)
trap 'rm -f "$log"' EXIT

extra=""
expect_rc=nonzero
max_seconds=$((deadline + 10))   # deadline + diagnosis grace (≤ 3 s) + mpirun teardown
min_seconds=0
patterns=()
case $case_name in
  healthy)
    fault=""; expect_rc=zero; patterns=("steps done") ;;
  crash)
    # mpirun itself tears the job down when a rank exits non-zero.
    fault="rank=1,step=5,kind=crash"; patterns=("rank 1@" "injected fault: crash at step 5") ;;
  crash-no-teardown)
    # mpirun told not to kill the job: the survivors' deadline must end it, naming rank 1.
    fault="rank=1,step=5,kind=crash"; extra="--mca orte_abort_on_non_zero_status 0"
    min_seconds=$deadline
    patterns=("collective 'step.stats' (#6) timed out" "rank(s) 1 never arrived") ;;
  stall)
    fault="rank=2,step=3,kind=stall"; min_seconds=$deadline
    patterns=("injected fault: stall at step 3" "collective 'step.stats' (#4) timed out"
              "rank(s) 2 never arrived") ;;
  *) echo "unknown case $case_name" >&2; exit 2 ;;
esac

tag="$case_name-$$"   # marks this run's processes (ctest may run cases in parallel)
start=$(date +%s.%N)
REPSHAPE_MPIRUN_EXTRA=$extra "$launcher" "$np" 60 "$worker" --fault "$fault" --timeout "$deadline" \
  --tag "$tag" >"$log" 2>&1
rc=$?
elapsed=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')
cat "$log"
echo "fault_test[$case_name]: exit status $rc after ${elapsed}s"

fail=0
if [ "$expect_rc" = zero ] && [ "$rc" -ne 0 ]; then echo "FAIL: expected exit 0" >&2; fail=1; fi
if [ "$expect_rc" = nonzero ] && [ "$rc" -eq 0 ]; then echo "FAIL: expected non-zero exit" >&2; fail=1; fi
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then echo "FAIL: watchdog fired (hang)" >&2; fail=1; fi
if awk -v x="$elapsed" -v m="$max_seconds" 'BEGIN { exit !(x > m) }'; then echo "FAIL: took > ${max_seconds}s" >&2; fail=1; fi
if awk -v x="$elapsed" -v m="$min_seconds" 'BEGIN { exit !(x < m) }'; then echo "FAIL: ended before the ${min_seconds}s deadline" >&2; fail=1; fi
for p in "${patterns[@]}"; do
  grep -qF -- "$p" "$log" || { echo "FAIL: output lacks \"$p\"" >&2; fail=1; }
done
# No rank may survive the job.
sleep 0.5
if pgrep -f -- "--tag $tag" >/dev/null 2>&1; then
  echo "FAIL: a fault_worker process outlived mpirun" >&2; fail=1
fi
exit $fail
