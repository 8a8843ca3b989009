#!/usr/bin/env bash
# Installs the dependencies, builds repshape and runs the main job: the Fashion-MNIST MLP with a
# class-wise covariance penalty, data-parallel on 2 local ranks (mpirun), global-batch statistics.
# Results land in runs/quickstart/{config.resolved.toml,steps.jsonl,result.json}.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/deploy/install-deps.sh"
"$root/deploy/build.sh" repshape
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
ranks=${RANKS:-2}
mpirun -np "$ranks" --oversubscribe --bind-to none "${BUILD_DIR:-$root/build}/runner/repshape" \
  train jobs/fashion-mlp.toml --out runs/quickstart "$@"
echo
echo "test set:"; sed 's/.*"test":\({[^}]*}\).*/  \1/' runs/quickstart/result.json
