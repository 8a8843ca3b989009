#!/usr/bin/env bash
# Installs the dependencies, builds everything and runs the whole test suite (unit, reference,
# multi-process under mpirun, end to end). This is exactly what CI runs (.ci/run).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
start=$(date +%s)
"$root/deploy/install-deps.sh"
"$root/deploy/build.sh"
# mpirun refuses to run as root unless told; the tests launch real processes.
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
ctest --test-dir "${BUILD_DIR:-$root/build}" --output-on-failure -j "${TEST_JOBS:-2}" --timeout 900
echo "check: passed in $(( $(date +%s) - start )) s"
