#!/usr/bin/env bash
# repshape train vs the same model in Python PyTorch (Debian python3-torch, the same ATen), on the
# same data, one thread each, side by side in one run: prints samples/s of both and their ratio.
# Usage: tests/bench/bench_train.sh [BUILD_DIR] [STEPS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}; steps=${2:-2000}
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
train_size=10000

# Without a penalty (the plain training loop) and with cw-cr on h5 (the product's case).
sed '/^\[\[regularizer\]\]/,$d' "$root/jobs/choi-mnist-mlp.toml" > "$out/plain.toml"
"$build/runner/repshape" train "$out/plain.toml" --out "$out/plain" \
  --set data.source=fashion-mnist --set data.train_size=$train_size --set data.validation_size=0 \
  --set train.steps=$steps --set train.log_every=$((steps - 20)) >/dev/null
"$build/runner/repshape" train "$root/jobs/choi-mnist-mlp.toml" --out "$out/cwcr" \
  --set data.source=fashion-mnist --set data.train_size=$train_size --set data.validation_size=0 \
  --set train.steps=$steps --set train.log_every=$((steps - 20)) >/dev/null
# One BLAS thread for Python too: torch.set_num_threads(1) does not reach OpenBLAS's pool.
python_json=$(OPENBLAS_NUM_THREADS=1 /usr/bin/python3 "$here/train_reference.py" "$steps" "$train_size")

# The last log window (steps 21..N) of repshape excludes the same warm-up as the Python script.
rate() { tail -n 1 "$1/steps.jsonl" | sed 's/.*"samples_per_s":\([0-9.e+]*\).*/\1/'; }
plain=$(rate "$out/plain"); cwcr=$(rate "$out/cwcr")
python=$(echo "$python_json" | sed 's/.*"samples_per_s": \([0-9.e+]*\).*/\1/')
awk -v p="$plain" -v c="$cwcr" -v y="$python" -v s="$steps" 'BEGIN {
  printf "Choi MNIST MLP 784-6x100-10, batch 100, Adam, 1 thread, %d steps\n", s
  printf "  python pytorch           %10.0f samples/s\n", y
  printf "  repshape (no penalty)    %10.0f samples/s   ratio vs python %.2f\n", p, p / y
  printf "  repshape (cw-cr on h5)   %10.0f samples/s   ratio vs python %.2f, vs no penalty %.2f\n", c, c / y, c / p
}'
