#!/usr/bin/env bash
# Two builds of repshape side by side on the Choi MNIST MLP (784-6x100-10, Fashion-MNIST 10 000,
# 1 thread per rank): W=1 and W=2 (mpirun), rounds interleaved (old W=1, old W=2, new W=1, new W=2,
# …), each run's median samples/s over its log windows (the first, warm-up, skipped), best of the
# rounds. For "what did this change do" on a shared machine: both binaries see the same load.
# Usage: tests/bench/compare_builds.sh OLD_BUILD NEW_BUILD [BATCH 100] [STEPS 1500] [PLAIN 0|1] [ROUNDS 3]
#   PLAIN=1 drops the config's regularizers (cw-cr on h5).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); root=$(cd "$here/../.." && pwd)
old=${1:?usage: compare_builds.sh OLD_BUILD NEW_BUILD [BATCH] [STEPS] [PLAIN] [ROUNDS]}; new=${2:?}
batch=${3:-100}; steps=${4:-1500}; plain=${5:-0}; rounds=${6:-3}
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
config=$root/jobs/choi-mnist-mlp.toml
if [ "$plain" = 1 ]; then sed '/^\[\[regularizer\]\]/,$d' "$config" > "$out/plain.toml"; config=$out/plain.toml; fi
for _ in $(seq "$rounds"); do
  for which in old new; do
    bin=$old/runner/repshape; [ "$which" = new ] && bin=$new/runner/repshape
    for world in 1 2; do
      cmd=("$bin" train "$config" --out "$out/run" --overwrite --set data.source=fashion-mnist
           --set data.train_size=10000 --set data.validation_size=0 --set train.batch_size="$batch"
           --set train.steps="$steps" --set train.log_every=$((steps / 5)))
      if [ "$world" = 2 ]; then mpirun -np 2 --bind-to none "${cmd[@]}" > /dev/null; else "${cmd[@]}" > /dev/null; fi
      /usr/bin/python3 -c 'import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])][1:]
print(round(statistics.median(r["samples_per_s"] for r in rows)))' "$out/run/steps.jsonl" >> "$out/$which$world"
    done
  done
done
best() { sort -g "$1" | tail -1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
o1=$(best "$out/old1"); o2=$(best "$out/old2"); n1=$(best "$out/new1"); n2=$(best "$out/new2")
echo "batch $batch, $( [ "$plain" = 1 ] && echo plain || echo cw-cr), best of $rounds (samples/s; rounds: old $(tr '\n' ' ' < "$out/old1")| $(tr '\n' ' ' < "$out/old2")new $(tr '\n' ' ' < "$out/new1")| $(tr '\n' ' ' < "$out/new2"))"
echo "  old W=1 $o1  W=2 $o2  W2/W1 $(ratio "$o2" "$o1")"
echo "  new W=1 $n1  W=2 $n2  W2/W1 $(ratio "$n2" "$n1")"
echo "  new/old W=1 $(ratio "$n1" "$o1")  W=2 $(ratio "$n2" "$o2")   [load $(cut -d' ' -f1-3 /proc/loadavg)]"
