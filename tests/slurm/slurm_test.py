#!/usr/bin/python3
"""`repshape slurm` on a real one-node Slurm (deploy/slurm/local-cluster.sh, started by the CTest
fixture with MaxArraySize = 3; SLURM_CONF points at it). Real sbatch, srun --mpi=pmix, signals.

  array    3 cells as one array through sbatch to completion; each cell's result.json equals (aside
           from wall times) a local `repshape train` of the same cell; a resubmission has nothing to do.
  preempt  a 2-rank cell sent USR2 (scancel --signal=USR2 --batch) mid-run checkpoints, exits 75,
           requeues itself, resumes on restart and ends byte-identical to an uninterrupted 2-rank run.
  kill9    kill -9 of rank 1 mid-run: the cell fails within the collective deadline (result.json
           failed); the resubmission (--retry-failed) resumes from the last checkpoint and ends
           byte-identical to an uninterrupted run.
  chunks   7 cells with MaxArraySize 3: three arrays (3 + 3 + 1 tasks) covering every cell once.
  grid     a small grid spec with validation selection: phase-1 and baseline cells as an array, the
           phase-2 cells as a dependent array (afterany); `repshape report` prints the same table
           as for the local `repshape grid --run` of the same spec.
A watchdog turns a hang into a failure; every job this test submitted is cancelled at exit."""
import argparse, atexit, glob, json, os, re, shutil, signal, subprocess, sys, tempfile, time

CONFIG = """
[data]
source = "factors"
samples = 400
test_samples = 100
factors = 5
input_dim = 20

[model]
hidden = [16]
dropout = 0.2

[train]
steps = 30
batch_size = 20
timings = false
progress_s = 0

[distributed]
timeout_s = 5

[[regularizer]]
name = "cw-cr"
targets = ["h1"]
weight = 0.1
"""

# 2 baseline cells + 2 phase-1 (cr, lambda) + 2 phase-2 cells = 6 cells (tests/jobs/grid_test.py's).
GRID = """[grid]
name = "tiny"
base = "c.toml"
trials = 2
[select]
axis = "lambda"
search = { "data.validation_size" = 100 }
[report]
rows = "regularizer"
columns = "condition"
[[axis]]
name = "regularizer"
values = [
  { name = "baseline", set = { regularizer = [] }, skip = ["lambda"] },
  { name = "cr", set = { "regularizer.0.name" = "cr" } },
]
[[axis]]
name = "condition"
values = [{ name = "small" }]
[[axis]]
name = "lambda"
key = "regularizer.0.weight"
values = [0.01, 0.1]
"""

failures = []
submitted = []


def check(ok, what):
    print(("ok:   " if ok else "FAIL: ") + what, flush=True)
    if not ok:
        failures.append(what)


def run(cmd, timeout=120):
    try:
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        sys.exit(f"FAIL: watchdog: {' '.join(cmd)} still running after {timeout} s")


def submit(binary, spec, results, *extra):
    p = run([binary, "slurm", spec, "--results", results, "--submit", *extra])
    print(p.stdout, end="")
    ids = re.findall(r"submitted array [\w-]+: job (\d+)", p.stdout)
    submitted.extend(ids)
    return p, ids


def wait_jobs(ids, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        q = run(["squeue", "-h", "-j", ",".join(ids), "-o", "%i %T"])
        if q.returncode == 0 and not q.stdout.strip():
            return
        time.sleep(0.5)
    sys.exit(f"FAIL: watchdog: jobs {ids} still queued/running after {timeout} s:\n{q.stdout}")


def cancel_all():
    if submitted:
        subprocess.run(["scancel", *submitted], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def without_walls(path):
    return {k: v for k, v in json.load(open(path)).items() if "wall" not in k}


def logs(results):
    return "".join(open(f).read() for f in sorted(glob.glob(os.path.join(results, "slurm", "logs", "*.out"))))


def local_reference(binary, config, out, world, *sets):
    cmd = [binary, "train", config, "--out", out, "-q"]
    for s in sets:
        cmd += ["--set", s]
    if world > 0:  # under srun every cell uses the MPI backend: so does the reference
        cmd = ["mpirun", "-np", str(world), "--oversubscribe", "--bind-to", "none", "--mca", "btl", "self,vader"] + cmd
    p = run(cmd, timeout=180)
    check(p.returncode == 0, f"local reference run on {world} rank(s) exits 0\n{p.stdout[-1500:]}")


def case_array(binary, work, config):
    results = os.path.join(work, "R")
    p, ids = submit(binary, config, results, "--trials", "3")
    check(p.returncode == 0 and len(ids) == 1, f"one array submitted (exit {p.returncode}, jobs {ids})")
    wait_jobs(ids, 180)
    for trial in range(3):
        cell = os.path.join(results, "cells", f"trial={trial}", "result.json")
        check(os.path.exists(cell) and json.load(open(cell))["status"] == "ok", f"cell trial={trial} ok")
    ref = os.path.join(work, "local-trial1")
    local_reference(binary, config, ref, 1, "train.seed=1")
    a, b = without_walls(os.path.join(ref, "result.json")), without_walls(os.path.join(results, "cells", "trial=1", "result.json"))
    check(a == b, f"cell trial=1 under Slurm equals the local run (aside from wall times); differs: {sorted(k for k in a if a[k] != b.get(k))}")
    p, ids = submit(binary, config, results, "--trials", "3")
    check(p.returncode == 0 and not ids and "nothing to submit" in p.stdout, "resubmission: nothing to submit")


def cell_steps(cell):
    path = os.path.join(cell, "steps.jsonl")
    return open(path).read().count("\n") if os.path.exists(path) else 0


def slow_two_rank_cell(binary, work, config, extra=""):
    """A 1200-step cell on 2 ranks: its uninterrupted local run (mpirun) and its submission."""
    slow = os.path.join(work, "slow.toml")
    open(slow, "w").write(open(config).read().replace("steps = 30", "steps = 1200" + extra))
    ref = os.path.join(work, "ref2")
    local_reference(binary, slow, ref, 2)
    results = os.path.join(work, "R")
    p, ids = submit(binary, slow, results, "--ranks-per-cell", "2")
    return slow, ref, results, p, ids


def case_preempt(binary, work, config):
    slow, ref, results, p, ids = slow_two_rank_cell(binary, work, config)
    check(p.returncode == 0 and len(ids) == 1, f"submitted (exit {p.returncode})")
    cell = os.path.join(results, "cells", "trial=0")
    deadline = time.monotonic() + 120
    while cell_steps(cell) < 150 and time.monotonic() < deadline:
        time.sleep(0.05)
    check(cell_steps(cell) >= 150, "the cell is training under Slurm")
    s = run(["scancel", "--signal=USR2", "--batch", f"{ids[0]}_0"])
    check(s.returncode == 0, f"scancel --signal=USR2 --batch: {s.stdout.strip()}")
    wait_jobs(ids, 300)
    text = logs(results)
    check("exited with 75" in text and "requeueing" in text, "the cell exited 75 and the task requeued itself")
    check("restart 1" in text and "resuming from" in text, "the restarted task (SLURM_RESTART_COUNT=1) resumed from the checkpoint")
    result = json.load(open(os.path.join(cell, "result.json")))
    check(result["status"] == "ok", f"the cell ended ok ({result['status']})")
    check(open(os.path.join(ref, "steps.jsonl"), "rb").read() == open(os.path.join(cell, "steps.jsonl"), "rb").read(),
          "steps.jsonl byte-identical to the uninterrupted 2-rank run")
    check(without_walls(os.path.join(ref, "result.json")) == without_walls(os.path.join(cell, "result.json")),
          "result.json equal to the uninterrupted run's (aside from wall times)")
    if failures:
        print(text[-4000:])


def rank_pid(cell, rank):
    for proc in glob.glob("/proc/[0-9]*"):
        try:
            argv = open(proc + "/cmdline", "rb").read().split(b"\0")
            env = open(proc + "/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if b"train" in argv and cell.encode() in argv and f"SLURM_PROCID={rank}".encode() in env:
            return int(proc.rsplit("/", 1)[1])
    return None


def case_kill9(binary, work, config):
    slow, ref, results, p, ids = slow_two_rank_cell(binary, work, config, "\ncheckpoint_every = 100")
    cell = os.path.join(results, "cells", "trial=0")
    deadline = time.monotonic() + 120
    while not glob.glob(os.path.join(cell, "checkpoints", "step-*", "DONE")) and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = rank_pid(cell, 1)
    check(pid is not None, "found rank 1 of the cell after its first checkpoint")
    if pid is None:
        return
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    wait_jobs(ids, 120)
    elapsed = time.monotonic() - killed
    result = json.load(open(os.path.join(cell, "result.json"))) if os.path.exists(os.path.join(cell, "result.json")) else {}
    check(result.get("status") == "failed", f"the cell failed: {result.get('status')}: {result.get('reason')}")
    p, ids2 = submit(binary, slow, results, "--ranks-per-cell", "2")
    check(not ids2 and "nothing to submit" in p.stdout, "a failed cell is finished: no resubmission without --retry-failed")
    check(elapsed < 5 + 25, f"the array task ended {elapsed:.1f} s after the kill (deadline 5 s + slack)")
    last = sorted(glob.glob(os.path.join(cell, "checkpoints", "step-*", "DONE")))[-1].split("/")[-2]
    p, ids = submit(binary, slow, results, "--ranks-per-cell", "2", "--retry-failed")
    check(len(ids) == 1, "resubmitted the failed cell")
    wait_jobs(ids, 300)
    check(f"resuming from {os.path.join(cell, 'checkpoints', last)}" in logs(results), f"the rerun resumed from {last}")
    check(json.load(open(os.path.join(cell, "result.json")))["status"] == "ok", "the rerun ended ok")
    check(open(os.path.join(ref, "steps.jsonl"), "rb").read() == open(os.path.join(cell, "steps.jsonl"), "rb").read(),
          "steps.jsonl byte-identical to the uninterrupted 2-rank run")


def case_chunks(binary, work, config):
    results = os.path.join(work, "R")
    p, ids = submit(binary, config, results, "--trials", "7", "--set", "train.steps=5")
    check(len(ids) == 3, f"7 cells, MaxArraySize 3: three arrays ({ids})")
    wait_jobs(ids, 240)
    mapped = []
    for f in sorted(glob.glob(os.path.join(results, "slurm", "submit-*", "array-*.cells"))):
        mapped += [line.split("\t")[0] for line in open(f)]
    check(sorted(mapped) == sorted(f"trial={t}" for t in range(7)), f"the arrays' cells cover every cell once: {mapped}")
    for t in range(7):
        cell = os.path.join(results, "cells", f"trial={t}")
        ok = os.path.exists(cell + "/result.json") and json.load(open(cell + "/result.json"))["status"] == "ok"
        check(ok and cell_steps(cell) == 5, f"cell trial={t} ran once to the end")
    starts = len(re.findall(r"cell trial=\d+: srun", logs(results)))
    check(starts == 7, f"7 cell launches in the logs ({starts})")


def case_grid(binary, work, config):
    spec = os.path.join(work, "grid.toml")
    open(spec, "w").write(GRID)
    local = os.path.join(work, "L")
    p = run([binary, "grid", spec, "--results", local, "--run", "--set", "train.threads=1"], timeout=300)
    check(p.returncode == 0, f"local grid run exits 0\n{p.stdout[-1500:]}")
    results = os.path.join(work, "R")
    p, ids = submit(binary, spec, results, "--set", "train.threads=1")
    check(len(ids) == 3 and "array phase2-0" in p.stdout, f"phase 1 (2 arrays: 4 cells, MaxArraySize 3) and a dependent phase-2 array submitted ({ids})")
    wait_jobs(ids, 300)
    cells = json.load(open(os.path.join(results, "cells.json")))
    cells = cells.get("cells", cells) if isinstance(cells, dict) else cells
    for cell in cells:
        cid = cell["id"] if isinstance(cell, dict) else cell
        path = os.path.join(results, "cells", cid, "result.json")
        check(os.path.exists(path) and json.load(open(path)).get("status") == "ok", f"cell {cid} ok under Slurm")
    a = run([binary, "report", local]).stdout
    b = run([binary, "report", results]).stdout
    check(a == b and "cr" in a, f"repshape report: the same table as the local run\n--- local\n{a}\n--- slurm\n{b}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--case", required=True, choices=["array", "preempt", "kill9", "chunks", "grid"])
    args = ap.parse_args()
    for tool in ("sbatch", "squeue", "scancel", "scontrol"):
        if not shutil.which(tool):
            print(f"SKIP: {tool} not found (apt-get install slurm-wlm munge; deploy/install-deps.sh)")
            sys.exit(77)
    atexit.register(cancel_all)
    os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    # Results live where the (one) node sees them: any local directory here.
    work = tempfile.mkdtemp(prefix=f"repshape-slurm-{args.case}-")
    config = os.path.join(work, "c.toml")
    open(config, "w").write(CONFIG)
    start = time.monotonic()
    {"array": case_array, "preempt": case_preempt, "kill9": case_kill9, "chunks": case_chunks, "grid": case_grid}[args.case](args.bin, work, config)
    print(f"{args.case}: {time.monotonic() - start:.1f} s")
    if failures:
        print(logs(os.path.join(work, "R"))[-3000:])
        sys.exit(f"{len(failures)} check(s) failed")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
