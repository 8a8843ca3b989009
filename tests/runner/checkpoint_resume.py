#!/usr/bin/python3
"""Checkpoints and --resume (issue 10, SPEC §7), real processes under mpirun:

  same-w W       a run killed at step 17 (--fault crash; checkpoint_every = 7) and resumed with --resume
                 on W ranks writes a steps.jsonl byte-identical to the uninterrupted run on W ranks
                 (train.timings = false) and the same result.json aside from wall times; the last two
                 checkpoints are kept.
  usr2           SIGUSR2 mid-run: status preempted, exit 75, a checkpoint at the stop step, and the
                 resumed run again ends byte-identical to the uninterrupted one.
  cross-w        a checkpoint written by 2 ranks resumes on 1 and on 3 ranks and follows the
                 one-process trajectory to the equivalence bounds of equivalence.py (per-step losses
                 and penalties 1e-4 relative, evaluation losses 1e-4 relative).
A watchdog turns a hang into a failure."""
import argparse, json, math, os, shutil, signal, subprocess, sys, tempfile, time

CONFIG = """
[data]
source = "factors"
samples = 400
test_samples = 100
validation_size = 40
factors = 5
input_dim = 20

[model]
hidden = [16, 12]
dropout = 0.2
batch_norm_layers = ["h2"]

[optim]
name = "adam"
lr = 0.01

[train]
steps = 40
batch_size = 24
timings = false
checkpoint_every = 7
progress_s = 0

[distributed]
timeout_s = 4

[[regularizer]]
name = "cw-cr"
targets = ["h1"]
weight = 0.1
"""

MPI = ["mpirun", "--oversubscribe", "--bind-to", "none", "--mca", "btl", "self,vader"]
failures = []


def check(ok, what):
    print(("ok:   " if ok else "FAIL: ") + what, flush=True)
    if not ok:
        failures.append(what)


def train(binary, config, out, world, extra=(), timeout=120):
    cmd = [binary, "train", config, "--out", out, "-q", *extra]
    if world > 1:
        cmd = MPI + ["-np", str(world)] + cmd
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        sys.exit(f"FAIL: watchdog: {' '.join(cmd)} still running after {timeout} s")
    return p.returncode, p.stdout


def result_without_walls(path):
    result = json.load(open(path))
    return {k: v for k, v in result.items() if "wall" not in k}


def checkpoints(out):
    root = os.path.join(out, "checkpoints")
    return sorted(d for d in os.listdir(root) if os.path.exists(os.path.join(root, d, "DONE")))


def same_as_reference(ref, out, label):
    check(open(os.path.join(ref, "steps.jsonl"), "rb").read() == open(os.path.join(out, "steps.jsonl"), "rb").read(),
          f"{label}: steps.jsonl byte-identical to the uninterrupted run")
    a, b = result_without_walls(os.path.join(ref, "result.json")), result_without_walls(os.path.join(out, "result.json"))
    diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    check(not diff, f"{label}: result.json equal aside from wall times (differs: {diff})")


def same_w(binary, work, config, world):
    ref = os.path.join(work, f"ref{world}")
    rc, log = train(binary, config, ref, world)
    check(rc == 0, f"W={world}: uninterrupted run exits 0 (got {rc})\n{log[-2000:]}")
    out = os.path.join(work, f"killed{world}")
    rc, log = train(binary, config, out, world, ["--fault", f"rank={world - 1},step=17,kind=crash"])
    check(rc != 0, f"W={world}: the run crashed at step 17 (exit {rc})")
    check(checkpoints(out) == ["step-00000007", "step-00000014"], f"W={world}: checkpoints 7 and 14 complete: {checkpoints(out)}")
    lines = open(os.path.join(out, "steps.jsonl")).read().count("\n")
    check(lines >= 14, f"W={world}: the killed run logged past the checkpoint ({lines} lines)")
    rc, log = train(binary, config, out, world, ["--resume"])
    check(rc == 0 and "step 14 of 40" in log, f"W={world}: --resume from step 14 exits 0 (got {rc})\n{log[-2000:]}")
    same_as_reference(ref, out, f"W={world} kill@17+resume")
    check(checkpoints(out) == ["step-00000028", "step-00000035"], f"W={world}: the last two checkpoints kept: {checkpoints(out)}")
    return ref, out


def usr2(binary, work, config):
    slow = os.path.join(work, "slow.toml")
    open(slow, "w").write(open(config).read().replace("steps = 40", "steps = 3000").replace("checkpoint_every = 7", "checkpoint_every = 0"))
    ref = os.path.join(work, "ref-usr2")
    rc, _ = train(binary, slow, ref, 1)
    check(rc == 0, "usr2: uninterrupted 3000-step run exits 0")
    out = os.path.join(work, "usr2")
    p = subprocess.Popen([binary, "train", slow, "--out", out, "-q"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    steps = os.path.join(out, "steps.jsonl")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and p.poll() is None:
        if os.path.exists(steps) and open(steps).read().count("\n") >= 200:
            break
        time.sleep(0.02)
    p.send_signal(signal.SIGUSR2)
    try:
        log, _ = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        sys.exit("FAIL: watchdog: the run did not stop after SIGUSR2")
    result = json.load(open(os.path.join(out, "result.json")))
    check(p.returncode == 75 and result.get("status") == "preempted",
          f"usr2: exit 75 and status preempted (got {p.returncode}, {result.get('status')}: {result.get('reason')})")
    stopped = result.get("step", 0)
    check(checkpoints(out) == [f"step-{stopped:08d}"], f"usr2: one checkpoint at the stop step {stopped}: {checkpoints(out)}")
    check(0 < stopped < 3000, f"usr2: stopped mid-run (step {stopped})")
    rc, log = train(binary, slow, out, 1, ["--resume"])
    check(rc == 0, f"usr2: resume exits 0 (got {rc})\n{log[-1500:]}")
    same_as_reference(ref, out, "usr2+resume")


def close(a, b, rel):
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-9)


def cross_w(binary, work, config, ref1):
    # A checkpoint from 2 ranks (the crash at step 17 leaves checkpoints 7 and 14 written by W=2).
    source = os.path.join(work, "killed2-copy")
    rc, _ = train(binary, config, source, 2, ["--fault", "rank=1,step=17,kind=crash"])
    check(checkpoints(source)[-1] == "step-00000014", f"cross-w: W=2 checkpoint at 14: {checkpoints(source)}")
    reference = [json.loads(l) for l in open(os.path.join(ref1, "steps.jsonl"))]
    ref_result = json.load(open(os.path.join(ref1, "result.json")))
    for world in (1, 3):
        out = os.path.join(work, f"cross{world}")
        shutil.copytree(source, out)
        rc, log = train(binary, config, out, world, ["--resume"])
        check(rc == 0 and "written by 2 rank(s)" in log, f"cross-w: W=2 checkpoint resumes on W={world} (exit {rc})\n{log[-1500:]}")
        lines = [json.loads(l) for l in open(os.path.join(out, "steps.jsonl"))]
        check([l["step"] for l in lines] == [l["step"] for l in reference], f"cross-w W={world}: the same steps logged")
        worst = 0.0
        for a, b in zip(reference, lines):
            # equivalence.py's bounds: losses 1e-4 relative; a penalty's λΩ within 1e-4 of the loss.
            values = [("loss", a["loss"], b["loss"], abs(a["loss"])), ("task_loss", a["task_loss"], b["task_loss"], abs(a["task_loss"]))]
            values += [(k, 0.1 * v, 0.1 * b["penalties"].get(k, math.inf), abs(a["loss"])) for k, v in a.get("penalties", {}).items()]
            for key, x, y, scale in values:
                worst = max(worst, abs(x - y) / max(scale, 1e-9))
                if abs(x - y) > 1e-4 * max(scale, 1e-9):
                    check(False, f"cross-w W={world}: step {a['step']} {key} {y} vs one process {x}")
                    return
        check(True, f"cross-w W={world}: per-step losses and penalties within 1e-4 of one process (worst {worst:.2e})")
        result = json.load(open(os.path.join(out, "result.json")))
        for split in ("train", "test"):
            check(close(result[split]["loss"], ref_result[split]["loss"], 1e-4),
                  f"cross-w W={world}: {split} loss {result[split]['loss']} vs {ref_result[split]['loss']} (1e-4)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--case", required=True, choices=["same-w1", "same-w2", "usr2", "cross-w"])
    args = ap.parse_args()
    os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    work = tempfile.mkdtemp(prefix="repshape-ckpt-")
    config = os.path.join(work, "c.toml")
    open(config, "w").write(CONFIG)
    start = time.monotonic()
    if args.case == "same-w1":
        same_w(args.bin, work, config, 1)
    elif args.case == "same-w2":
        same_w(args.bin, work, config, 2)
    elif args.case == "usr2":
        usr2(args.bin, work, config)
    else:
        # equivalence.py's setting (lr 0.003, a global batch of 37 on 187 samples: a 2-row last
        # batch, resumed mid-epoch), where W ranks follow one process to its bounds.
        text = CONFIG.replace("samples = 400", "samples = 187").replace("validation_size = 40", "validation_size = 0")
        # No batch norm here: its running statistics (eval mode) already differ between W = 1 and 3
        # by ~2e-4 in the evaluation loss without any checkpoint (measured), beyond the 1e-4 bound.
        text = text.replace('batch_norm_layers = ["h2"]\n', "")
        open(config, "w").write(text.replace("lr = 0.01", "lr = 0.003").replace("batch_size = 24", "batch_size = 37"))
        ref1 = os.path.join(work, "ref1")
        rc, _ = train(args.bin, config, ref1, 1)
        check(rc == 0, "cross-w: one-process reference exits 0")
        cross_w(args.bin, work, config, ref1)
    print(f"{args.case}: {time.monotonic() - start:.1f} s")
    if failures:
        sys.exit(f"{len(failures)} check(s) failed")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
