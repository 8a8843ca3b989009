#!/usr/bin/env bash
# Every ratio of issue 12 (performance), each printed with the command that measured it and the
# load average at that moment. Side by side: the compared runs alternate, REPEAT rounds, best of
# each (the machine is shared: best-of is the least disturbed run). Figures: tests/bench/README.md.
# Usage: tests/bench/run-all.sh BUILD [REPEAT]        (REPEAT default 3; ~15 min on 2 idle cores)
#        SECTIONS="3 4" tests/bench/run-all.sh BUILD   runs only those sections (default: 1 2 3 4 5)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); root=$(cd "$here/../.." && pwd)
build=${1:?usage: run-all.sh BUILD [REPEAT]}; repeat=${2:-3}
build=$(cd "$build" && pwd)
bin=$build/runner/repshape
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
: > "$out/commands.txt"  # section 1 runs no repshape command
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OPENBLAS_NUM_THREADS=1  # Python: torch.set_num_threads(1) does not reach OpenBLAS's pool
py=/usr/bin/python3
load() { sed 's/.*load average: //' /proc/loadavg 2>/dev/null || uptime; }
section() { printf '\n== %s   [load %s]\n' "$1" "$(cut -d' ' -f1-3 /proc/loadavg)"; }
want() { [[ " ${SECTIONS:-1 2 3 4 5} " == *" $1 "* ]]; }
mlp=(--set data.source=fashion-mnist --set data.train_size=10000 --set data.validation_size=0)

# repshape train → samples/s of the last log window (warm-up excluded), stats bytes and comm s.
# train_rate NAME WORLD BATCH STEPS [extra --set ...]; env REPSHAPE_STATS_PATH passes through.
train_rate() {
  local name=$1 world=$2 batch=$3 steps=$4; shift 4
  local config=$root/jobs/choi-mnist-mlp.toml
  if [ "${PLAIN:-0}" = 1 ] || [ -n "${PENALTY:-}" ]; then
    sed '/^\[\[regularizer\]\]/,$d' "$config" > "$out/$name.toml"; config=$out/$name.toml
    # PENALTY="NAME[ METHOD]": that penalty alone on h5, weight 0.01 (l1w, l2w: every weight).
    if [ -n "${PENALTY:-}" ]; then
      local pen=${PENALTY%% *}
      printf '\n[[regularizer]]\nname = "%s"\nweight = 0.01\n' "$pen" >> "$config"
      case $pen in l1w | l2w) ;; *) echo 'targets = ["h5"]' >> "$config" ;; esac
      if [ "$pen" != "$PENALTY" ]; then printf 'method = "%s"\n' "${PENALTY#* }" >> "$config"; fi
    fi
  fi
  local cmd=("$bin" train "$config" --out "$out/$name" --overwrite "${mlp[@]}" --set train.batch_size=$batch
             --set train.steps=$steps --set train.log_every=$((steps - 20)) "$@")
  if [ -n "${PIN:-}" ]; then cmd=(taskset -c "$PIN" "${cmd[@]}"); fi  # one W=1 run on one core
  if [ "$world" -gt 1 ]; then cmd=(mpirun -np "$world" --oversubscribe --bind-to "${BIND:-none}" "${cmd[@]}"); fi
  echo "$ ${PENALTY:+[config: jobs/choi-mnist-mlp.toml with only $PENALTY (on h5), weight 0.01] }${OMPI_MCA_coll_libnbc_iallreduce_algorithm:+OMPI_MCA_coll_libnbc_iallreduce_algorithm=$OMPI_MCA_coll_libnbc_iallreduce_algorithm }${REPSHAPE_STATS_PATH:+REPSHAPE_STATS_PATH=$REPSHAPE_STATS_PATH }${REPSHAPE_SPLIT_CLASSES:+REPSHAPE_SPLIT_CLASSES=$REPSHAPE_SPLIT_CLASSES }${REPSHAPE_BYTE_INPUTS:+REPSHAPE_BYTE_INPUTS=$REPSHAPE_BYTE_INPUTS }${REPSHAPE_CPU_CACHE:+REPSHAPE_CPU_CACHE=$REPSHAPE_CPU_CACHE }${cmd[*]}" >> "$out/commands.txt"
  "${cmd[@]}" > /dev/null
  $py -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1])][-1]
print(r["samples_per_s"], r.get("stats_bytes",0), r.get("stats_comm_s",0), r.get("grad_comm_s",0))' "$out/$name/steps.jsonl"
}
best() { sort -g -r | head -1; }  # best samples/s of the rounds
# The step's phases (steps.jsonl phase_s) of a run's last record, in ms per step.
phases() {
  $py -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1])][-1]
print("  ".join("%s %.3f" % (k, v * 1e3) for k, v in r.get("phase_s", {}).items()))' "$out/$1/steps.jsonl"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

if want 1; then
section "1. Penalty cost vs the Choi MNIST MLP step (target: <= 1.10; cw-cr, cw-rr <= 1.20)"
echo "$ $build/tests/bench/bench_penalties --iters 150 --no-wide"
"$build/tests/bench/bench_penalties" --iters 150 --no-wide
echo "$ $build/tests/bench/bench_penalties --batch 512 --only 'rr exact,lmulti' --iters 60 --no-wide   (target <= 1.30)"
"$build/tests/bench/bench_penalties" --batch 512 --only "rr exact,lmulti" --iters 60 --no-wide
# The same question asked of `repshape train` itself (its data gather, loss and control included):
# samples/s of the plain MLP vs the MLP with one penalty on h5, batch 100, W=1, rounds alternating.
pens=("lsigma" "cr" "cw-cr" "vr" "cw-vr" "l1r" "rr" "rr exact" "cw-rr" "corr" "xcov" "lmulti" "l1w" "l2w")
: > "$out/res-pen"
for _ in $(seq "$repeat"); do
  echo "plain $(PLAIN=1 train_rate pen-plain 1 100 2000 | cut -d' ' -f1)" >> "$out/res-pen"
  for p in "${pens[@]}"; do
    echo "${p// /-} $(PENALTY="$p" train_rate "pen-${p// /-}" 1 100 2000 | cut -d' ' -f1)" >> "$out/res-pen"
  done
done
echo "repshape train, W=1, batch 100, 2000 steps, best of $repeat: plain samples/s / penalised samples/s"
$py - "$out/res-pen" <<'PY'
import sys
best = {}
for line in open(sys.argv[1]):
    name, rate = line.split()
    best[name] = max(best.get(name, 0.0), float(rate))
plain = best.pop("plain")
print("  plain %.0f samples/s;  " % plain + "  ".join("%s %.3f" % (n, plain / r) for n, r in best.items()))
PY
fi

if want 2; then
section "2. Two ranks vs one, MLP + cw-cr on h5 (target: W2/W1 >= 1.6, repshape W2 / Python DDP W2 >= 2)"
for batch in 100 500; do
  steps=$((batch == 100 ? 600 : 200))
  : > "$out/r1"; : > "$out/r2"; : > "$out/p1"; : > "$out/p2"; : > "$out/r2core"; : > "$out/rhalf"; : > "$out/r2old"; : > "$out/rpair"
  for _ in $(seq "$repeat"); do
    train_rate w1 1 $batch $steps | cut -d' ' -f1 >> "$out/r1"
    train_rate w1half 1 $((batch / 2)) $steps | cut -d' ' -f1 >> "$out/rhalf"
    # Two independent W=1 runs at B/2 at the same time, one per core: the two ranks' compute with
    # no communication at all, but sharing the machine (caches, memory, the host's other tenants).
    if [ "$(nproc)" -ge 2 ]; then
      PIN=0 train_rate pair0 1 $((batch / 2)) $steps | cut -d' ' -f1 > "$out/pair0.rate" &
      PIN=1 train_rate pair1 1 $((batch / 2)) $steps | cut -d' ' -f1 > "$out/pair1.rate"
      wait
      awk 'NR == FNR { a = $1; next } { print (a < $1 ? a : $1) }' "$out/pair0.rate" "$out/pair1.rate" >> "$out/rpair"
    fi
    train_rate w2 2 $batch $steps | cut -d' ' -f1 >> "$out/r2"
    BIND=core train_rate w2core 2 $batch $steps | cut -d' ' -f1 >> "$out/r2core"
    # Before the ring schedule and the class-wise split: libnbc's binomial all-reduce, every class on every rank.
    OMPI_MCA_coll_libnbc_iallreduce_algorithm=2 REPSHAPE_SPLIT_CLASSES=0 train_rate w2old 2 $batch $steps | cut -d' ' -f1 >> "$out/r2old"
    $py "$here/ddp_reference.py" 1 $batch $steps | sed 's/.*"samples_per_s": \([0-9.e+]*\).*/\1/' >> "$out/p1"
    $py "$here/ddp_reference.py" 2 $batch $steps | sed 's/.*"samples_per_s": \([0-9.e+]*\).*/\1/' >> "$out/p2"
  done
  r1=$(best < "$out/r1"); r2=$(best < "$out/r2"); r2c=$(best < "$out/r2core"); p1=$(best < "$out/p1"); p2=$(best < "$out/p2")
  echo "global batch $batch ($steps steps, best of $repeat, load $(cut -d' ' -f1-3 /proc/loadavg)): samples/s"
  printf '  repshape W=1 %8.0f   W=2 %8.0f (bind none)  %8.0f (bind core)   W2/W1 %s (core: %s)\n' \
    "$r1" "$r2" "$r2c" "$(ratio "$r2" "$r1")" "$(ratio "$r2c" "$r1")"
  r2o=$(best < "$out/r2old")
  printf '  repshape W=2 %8.0f with libnbc binomial all-reduces and no class-wise split (the 2026-12-01 schedule): W2/W1 %s\n' \
    "$r2o" "$(ratio "$r2o" "$r1")"
  printf '  python   W=1 %8.0f   W=2 %8.0f (DDP gloo)                     W2/W1 %s\n' "$p1" "$p2" "$(ratio "$p2" "$p1")"
  printf '  repshape W=2 / python DDP W=2: %s\n' "$(ratio "$r2" "$p2")"
  # Two ranks with free communication and no shared-core effects each take one W=1 step at half
  # the batch: W1(B) step / W1(B/2) step bounds W2/W1 from above (Amdahl: the per-step costs that
  # do not shrink with the rows, optimizer and plumbing, are paid in full on every rank).
  rh=$(best < "$out/rhalf")
  printf '  bound: W=1 at batch %d %8.0f samples/s -> W2/W1 <= step(B)/step(B/2) = %s\n' $((batch / 2)) "$rh" \
    "$(awk -v a="$r1" -v h="$rh" -v b=$batch 'BEGIN { printf "%.2f", (b / a) / (b / 2 / h) }')"
  if [ -s "$out/rpair" ]; then
    rp=$(best < "$out/rpair")
    printf '  bound with both cores busy: two W=1 runs at batch %d side by side, the slower %8.0f samples/s -> W2/W1 <= %s\n' \
      $((batch / 2)) "$rp" "$(awk -v a="$r1" -v p="$rp" 'BEGIN { printf "%.2f", 2 * p / a }')"
  fi
  echo "  phases ms/step (last round): W=1 [$(phases w1)]"
  echo "                               W=1 B/2 [$(phases w1half)]"
  echo "                               W=2 rank 0 [$(phases w2)]"
  echo "                               W=2 rank 0, binomial + no split [$(phases w2old)]"
  echo "  $ $py $here/ddp_reference.py 2 $batch $steps"
done
fi

if want 3; then
section "3. Statistics path per layer at W=2: packed sums vs gathered rows (both exact)"
for batch in 100 500; do
  steps=$((batch == 100 ? 600 : 200))
  : > "$out/res-packed"; : > "$out/res-gather"; : > "$out/res-nosplit"
  for _ in $(seq "$repeat"); do
    REPSHAPE_STATS_PATH=packed train_rate packed 2 $batch $steps >> "$out/res-packed"
    REPSHAPE_STATS_PATH=gather train_rate gather 2 $batch $steps >> "$out/res-gather"
    REPSHAPE_STATS_PATH=gather REPSHAPE_SPLIT_CLASSES=0 train_rate nosplit 2 $batch $steps >> "$out/res-nosplit"
  done
  for path in packed gather nosplit; do
    sort -g -r "$out/res-$path" | head -1 | awk -v p=$path -v b=$batch '{ printf "  batch %d %-7s %8.0f samples/s  %9d stats bytes/step  stats all-reduce %.3f ms/step\n", b, p, $1, $2, $3 * 1e3 }'
  done
  echo "  phases ms/step (last round): gather [$(phases gather)]"
  echo "                               nosplit [$(phases nosplit)]"
done
echo "  (nosplit: the gather path with every rank computing cw-cr over every class, REPSHAPE_SPLIT_CLASSES=0)"
echo "  (auto picks the smaller: cw-cr M=100, K=10: packed 8*(K(1+M+M^2)+1) = $((8 * (10 * (1 + 100 + 10000) + 1))) B vs gather 4*N*(M+1))"
fi

if want 4; then
section "4. Plain step vs the GEMM floor (target: repshape >= 0.8 of the floor)"
: > "$out/res-floor"; : > "$out/res-plain"; : > "$out/res-floats"; : > "$out/res-glibc"; : > "$out/res-python"
for _ in $(seq "$repeat"); do
  "$build/tests/bench/bench_gemm_floor" --batch 100 --steps 3000 | sed 's/.*"samples_per_s": \([0-9.e+]*\).*/\1/' >> "$out/res-floor"
  PLAIN=1 train_rate plain 1 100 2000 | cut -d' ' -f1 >> "$out/res-plain"
  # The batch gathered from the float training set instead of its exact byte copy (ByteImages.h).
  REPSHAPE_BYTE_INPUTS=0 PLAIN=1 train_rate floats 1 100 2000 | cut -d' ' -f1 >> "$out/res-floats"
  # Every tensor through glibc's malloc instead of the caching CPU allocator (CachingCpuAllocator.h).
  REPSHAPE_CPU_CACHE=0 PLAIN=1 train_rate glibc 1 100 2000 | cut -d' ' -f1 >> "$out/res-glibc"
  $py "$here/train_reference.py" 2000 10000 | sed 's/.*"samples_per_s": \([0-9.e+]*\).*/\1/' >> "$out/res-python"
done
f=$(best < "$out/res-floor"); p=$(best < "$out/res-plain"); y=$(best < "$out/res-python")
q=$(best < "$out/res-floats"); m=$(best < "$out/res-glibc")
echo "  repshape phases ms/step (last round): $(phases plain)"
echo "    with REPSHAPE_BYTE_INPUTS=0 (float gather): $(phases floats)"
echo "    with REPSHAPE_CPU_CACHE=0 (glibc malloc):      $(phases glibc)"
printf '  GEMM floor step %.3f ms\n' "$(awk -v f="$f" 'BEGIN { printf "%.3f", 100 / f * 1e3 }')"
printf '  GEMM floor %8.0f   repshape %8.0f (%s of floor)   python %8.0f (%s of floor)   repshape/python %s\n' \
  "$f" "$p" "$(ratio "$p" "$f")" "$y" "$(ratio "$y" "$f")" "$(ratio "$p" "$y")"
printf '  repshape with the float gather %8.0f (%s of floor); byte/float gather %s\n' "$q" "$(ratio "$q" "$f")" "$(ratio "$p" "$q")"
printf '  repshape with glibc malloc     %8.0f (%s of floor); cached/glibc allocator %s\n' "$m" "$(ratio "$m" "$f")" "$(ratio "$p" "$m")"
echo "  $ $build/tests/bench/bench_gemm_floor --batch 100 --steps 3000; $py $here/train_reference.py 2000 10000"
fi

if want 5; then
section "5. Threads: ranks x threads vs cores ($(nproc) cores), plain MLP, global batch 100"
for cfg in "1 1" "1 2" "2 1" "2 2"; do
  set -- $cfg
  : > "$out/res-t"
  for _ in $(seq "$repeat"); do PLAIN=1 train_rate threads "$1" 100 600 --set train.threads="$2" | cut -d' ' -f1 >> "$out/res-t"; done
  printf '  ranks %d x threads %d = %d   %8.0f samples/s\n' "$1" "$2" $(($1 * $2)) "$(best < "$out/res-t")"
done
fi

section "commands (repshape runs)"
sort -u "$out/commands.txt"
