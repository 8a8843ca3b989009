#!/usr/bin/env bash
# Installs the dependencies, builds repshape and runs the quickstart GRID (jobs/specs/quickstart.toml):
# 3 regularizers (baseline, cr, cw-cr) x 2 training-set sizes (1k, 5k) of the Fashion-MNIST MLP,
# the penalty weight chosen on validation (Choi App. D.1), 2 trials; every cell trains data-parallel on
# 2 local ranks (mpirun) with global-batch statistics. Built-in data (Debian's dataset-fashion-mnist).
# Resumable: run it again after Ctrl-C and finished cells are kept. Prints the table at the end.
#   RESULTS=DIR (default runs/quickstart-grid)   RANKS=R (default 2)   extra args go to `repshape grid`
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/deploy/install-deps.sh"
"$root/deploy/build.sh" repshape
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
bin="${BUILD_DIR:-$root/build}/runner/repshape"
results=${RESULTS:-runs/quickstart-grid}
# --metrics: every rank of every cell serves /metrics on 127.0.0.1 (ephemeral ports; file_sd targets
# in $results/targets for deploy/monitoring.sh's Prometheus), the grid's cell counts on the runner's.
"$bin" grid jobs/specs/quickstart.toml --results "$results" --run --ranks-per-cell "${RANKS:-2}" --metrics "$@"
"$bin" report "$results" --format html --out "$results/report.html"
echo
"$bin" report "$results" --format md | tee "$results/report.md"
