#!/usr/bin/env bash
# Data-parallel cost on this machine, side by side in one run: the Choi MNIST MLP (784-6x100-10,
# batch 100, Adam, 1 thread per rank) with cw-cr on h5, at W=1 and W=2 (mpirun). Prints the median
# step time of each, their ratio, the share of the W=2 step spent in the statistics all-reduce and
# in the gradient all-reduce, and the bytes per step (formula and measured).
# Usage: tests/bench/bench_distributed.sh [BUILD_DIR] [STEPS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}; steps=${2:-600}
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
args=(train "$root/jobs/choi-mnist-mlp.toml" --set data.source=fashion-mnist --set data.train_size=10000
      --set data.validation_size=0 --set train.steps=$steps)
"$build/runner/repshape" "${args[@]}" --out "$out/w1" >/dev/null
mpirun -np 2 --oversubscribe --bind-to none "$build/runner/repshape" "${args[@]}" --out "$out/w2" >/dev/null
/usr/bin/python3 - "$out" <<'PY'
import json, statistics, sys
out = sys.argv[1]
def load(w):
    rows = [json.loads(l) for l in open(f"{out}/w{w}/steps.jsonl")][20:]  # skip warm-up
    step = statistics.median(100 / r["samples_per_s"] for r in rows)
    stats = statistics.median(r["stats_comm_s"] for r in rows)
    grad = statistics.median(r["grad_comm_s"] for r in rows)
    return step, stats, grad, rows[-1]["stats_bytes"], rows[-1]["grad_bytes"]
s1, _, _, _, _ = load(1)
s2, st2, gr2, sb, gb = load(2)
M, K = 100, 10
print("Choi MNIST MLP + cw-cr on h5 (M=100, K=10), global batch 100, 1 thread per rank")
print(f"  median step  W=1 {s1*1e3:7.2f} ms   W=2 {s2*1e3:7.2f} ms   W2/W1 {s2/s1:.2f}")
print(f"  W=2 share of step: statistics all-reduce {st2/s2:.1%}, gradient all-reduce {gr2/s2:.1%}")
print(f"  bytes/step: statistics {sb} (formula 8*(K*(1+M+M^2)+1) = {8*(K*(1+M+M*M)+1)}), gradients {gb}")
print(f"  cw-cr on Choi CIFAR-100 (M=128, K=100): statistics 8*(K*(1+M+M^2)+1) = {8*(100*(1+128+128*128)+1):,} B/step"
      f" vs gathering N=500 activations 4*N*M = {4*500*128:,} B/step")
PY
