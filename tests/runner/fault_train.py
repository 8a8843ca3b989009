#!/usr/bin/python3
"""`repshape train --fault` under mpirun (3 ranks, 4 s collective deadline): a rank that crashes or
stalls at step 5 must end EVERY rank non-zero within the deadline (plus start-up and tear-down
slack), with a message naming the failed rank and, for a stall, the operation. A watchdog turns a
hang into a failure."""
import argparse, os, subprocess, sys, tempfile, time

CONFIG = """
[data]
source = "factors"
samples = 400
test_samples = 50
factors = 5
input_dim = 20

[model]
hidden = [16]

[train]
steps = 40
batch_size = 20
timings = false

[distributed]
timeout_s = 4

[[regularizer]]
name = "cw-cr"
targets = ["h1"]
"""

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--kind", required=True, choices=["crash", "stall", "none"])
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="repshape-fault-")
    config = os.path.join(work, "c.toml")
    open(config, "w").write(CONFIG)
    cmd = ["mpirun", "-np", "3", "--oversubscribe", "--bind-to", "none", "--mca", "btl", "self,vader",
           args.bin, "train", config, "--out", os.path.join(work, "out")]
    if args.kind != "none":
        cmd += ["--fault", f"rank=1,step=5,kind={args.kind}"]
    start = time.monotonic()
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=90)
    except subprocess.TimeoutExpired:
        sys.exit(f"FAIL: watchdog: the job was still running after 90 s (a hang)")
    elapsed = time.monotonic() - start
    print(p.stdout[-3000:])
    print(f"exit {p.returncode} after {elapsed:.1f} s")
    if args.kind == "none":
        ok = p.returncode == 0 and os.path.exists(os.path.join(work, "out", "result.json"))
        sys.exit(0 if ok else "FAIL: the healthy run did not finish")
    failures = []
    if p.returncode == 0:
        failures.append("exit code 0: the fault went unnoticed")
    # 4 s deadline + MPI start-up/tear-down; a 300 s default deadline would blow far past this.
    if elapsed > 40:
        failures.append(f"took {elapsed:.1f} s: not ended within the deadline")
    if "rank 1" not in p.stdout:
        failures.append("no message names rank 1")
    if args.kind == "stall" and "timed out" not in p.stdout:
        failures.append("no timeout message naming the collective")
    if failures:
        sys.exit("FAIL: " + "; ".join(failures))
    print(f"PASS {args.kind}")

main()
