#!/usr/bin/python3
"""What happens after something goes wrong (issue 13), through the real binary, single process and
`mpirun -np 2`: run directories never mix, divergence stops every rank with status `diverged`, every
input error is early (exit 2, a located one-line message, nothing written), signals stop at a step
boundary with `interrupted`, and a fuzz pass over config values never crashes, dumps a stack or hangs.

Each group is one --group so CTest runs them in parallel; every process has a watchdog."""
import argparse, json, os, random, signal, struct, subprocess, sys, tempfile, time

BASE = """
[data]
source = "fashion-mnist"
train_size = 600
validation_size = 100
test_size = 300

[model]
hidden = [32, 32]

[train]
steps = 12
batch_size = 50
seed = 3
timings = false

[eval]
layers = ["h1"]

[[regularizer]]
name = "cw-cr"
weight = 0.01
targets = ["h2"]
"""

MPI_ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
MPIRUN = ["mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none", "--mca", "btl", "self,vader"]
STACK_MARKERS = ("frame #", "Exception raised from", "terminate called", "Segmentation fault", "core dumped")

failures = []


def check(condition, what, detail=""):
    if condition:
        print(f"  ok: {what}")
    else:
        print(f"  FAIL: {what}\n{detail}")
        failures.append(what)


def run(args, mpi=False, timeout=120, env=None):
    cmd = (MPIRUN if mpi else []) + args
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env or MPI_ENV)
        return p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        return None, f"TIMEOUT after {timeout}s: {' '.join(cmd)}\n{e.stdout}{e.stderr}"


def result(out):
    with open(os.path.join(out, "result.json")) as f:
        return json.load(f)


def step_lines(out):
    with open(os.path.join(out, "steps.jsonl")) as f:
        text = f.read()
    check(text == "" or text.endswith("\n"), "steps.jsonl ends with a complete line")
    return [json.loads(line) for line in text.splitlines()]


def no_stack(output, what):
    check(not any(m in output for m in STACK_MARKERS), f"{what}: no stack dump", output[-2000:])


def group_rundir(bin, work, config):
    print("run directories are transactions")
    out = os.path.join(work, "o")
    code, text = run([bin, "train", config, "--out", out, "-q"])
    check(code == 0 and result(out)["status"] == "ok", "first run ok", text)
    before = {n: open(os.path.join(out, n), "rb").read() for n in ("result.json", "steps.jsonl", "config.resolved.toml")}
    # Issue 13 repro 1: a second run (another seed, crashing at step 5) into the same directory.
    code, text = run([bin, "train", config, "--out", out, "--set", "train.seed=7", "--fault", "rank=0,step=5,kind=crash"])
    check(code == 2 and "--overwrite" in text and "status ok" in text, "an existing run is refused with exit 2", text)
    after = {n: open(os.path.join(out, n), "rb").read() for n in before}
    check(after == before, "the refused run left every file byte-identical")
    code, text = run([bin, "train", config, "--out", out, "--overwrite", "--set", "train.seed=7",
                      "--fault", "rank=0,step=5,kind=crash"])
    check(code == 3, "--overwrite with an injected crash exits 3", text)
    check(not os.path.exists(os.path.join(out, "result.json")), "the old result.json is gone: the folder cannot look successful")
    check(len(step_lines(out)) == 5, "steps.jsonl holds exactly the 5 complete steps of the crashed run")
    code, text = run([bin, "train", config, "--out", out, "--resume"])
    check(code == 2 and "checkpoint" in text, "--resume without checkpoints is refused", text)
    code, text = run([bin, "train", config, "--out", out, "--resume", "--overwrite"])
    check(code == 2, "--resume and --overwrite together are refused", text)
    afile = os.path.join(work, "a-file")
    open(afile, "w").write("x")
    code, text = run([bin, "train", config, "--out", afile])
    check(code == 2 and "not a directory" in text, "--out naming a file is refused", text)
    # A rank that stalls: rank 0 misses the collective deadline and records the failure before the job ends.
    stalled = os.path.join(work, "stalled")
    code, text = run([bin, "train", config, "--out", stalled, "-q", "--set", "distributed.timeout_s=3",
                      "--set", "train.steps=50", "--fault", "rank=1,step=5,kind=stall"], mpi=True, timeout=60)
    r = result(stalled)
    check(code == 70 and r["status"] == "failed" and r["exit_code"] == 70 and "rank(s) 1" in r["reason"]
          and r["step"] >= 4, f"a stalled rank: exit 70, result failed at step {r['step']}: {r['reason']}", text)
    no_stack(text, "stalled rank")
    # Two ranks: the refusal happens on every rank before MPI work; nothing is touched.
    code, text = run([bin, "train", config, "--out", out], mpi=True)
    check(code == 2 and "earlier run" in text, "mpirun -np 2 into a used directory: exit 2", text)


def group_diverged(bin, work, config):
    print("divergence stops every rank at the same step")
    for mpi in (False, True):
        for name, sets in (("penalty", ["--set", "optim.name=sgd", "--set", "optim.lr=10"]),
                           ("plain", ["--set", "optim.name=sgd", "--set", "optim.lr=10", "--set", "regularizer.weight=0",
                                      "--set", "model.activation=linear", "--set", "train.steps=200"])):
            out = os.path.join(work, f"d-{name}-{int(mpi)}")
            code, text = run([bin, "train", config, "--out", out, "-q"] + sets, mpi=mpi)
            label = f"{name}, {'2 ranks' if mpi else '1 process'}"
            check(code == 4, f"{label}: exit code 4", text)
            no_stack(text, label)
            r = result(out)
            check(r["status"] == "diverged" and r["exit_code"] == 4, f"{label}: status diverged", json.dumps(r))
            lines = step_lines(out)
            check(lines and lines[-1]["step"] == r["step"] and r["step"] < r["steps"],
                  f"{label}: stopped at once at step {r['step']} (last logged step {lines[-1]['step'] if lines else None})")
            if r.get("term") in ("loss",) or r.get("term", "").startswith("penalty"):
                check(lines[-1]["loss"] is None and all(l["loss"] is not None for l in lines[:-1]),
                      f"{label}: the last line is the first non-finite one ({r['term']})")
            check(r["term"] in ("loss", "gradient") or r["term"].startswith(("penalty ", "parameter ")),
                  f"{label}: term names what went non-finite: {r['term']}")
            check(r["test"] is None and r["layers"] == {}, f"{label}: no evaluation of a diverged model")


def group_input(bin, work, config):
    print("input errors: early, located, one line, nothing written")
    idx = os.path.join(work, "idx")
    os.makedirs(idx)
    for prefix, count, stray in (("train", 30, 200), ("t10k", 10, None)):
        images = struct.pack(">IIII", 0x00000803, count, 4, 4) + bytes(16 * count)
        labels = [i % 10 for i in range(count)]
        if stray is not None:
            labels[7] = stray
        open(os.path.join(idx, f"{prefix}-images-idx3-ubyte"), "wb").write(images)
        open(os.path.join(idx, f"{prefix}-labels-idx1-ubyte"), "wb").write(struct.pack(">II", 0x00000801, count) + bytes(labels))

    def case(name, text_or_args, expected, mpi=False, config_text=None):
        path = os.path.join(work, f"{name}.toml")
        if config_text is not None:
            open(path, "w").write(config_text)
        out = os.path.join(work, f"out-{name}")
        code, text = run([bin, "train", path if config_text is not None else config, "--out", out] + text_or_args, mpi=mpi)
        lines = [l for l in text.splitlines() if "error" in l]
        check(code == 2 and all(e in text for e in expected) and len(set(lines)) == 1 and not os.path.exists(out),
              f"{name}: exit 2, says {expected}, one line, nothing written", f"exit {code}\n{text}")
        no_stack(text, name)

    cnn = BASE.replace('hidden = [32, 32]', 'type = "cnn"\nlayers = ["conv:8:3", "pool:2", "fc:32"]').replace(
        '["h2"]', '["fc1"]').replace('["h1"]', '["conv1"]')
    case("cnn-syntax", [], ["cnn-syntax.toml:10: model.layers[0]", "'abc' is not an integer"],
         config_text=cnn.replace('"conv:8:3"', '"conv:abc:3"'))
    case("cnn-kind", [], ["cnn-kind.toml:10: model.layers[1]", "unknown layer kind 'max'"],
         config_text=cnn.replace('"pool:2"', '"max:2"'))
    case("cnn-shrink", [], ["model.layers[0]", "shrinks the 28x28 feature map to nothing"],
         config_text=cnn.replace('"conv:8:3"', '"conv:8:40:1:0"'))
    case("cnn-after-fc", [], ["model.layers[3]", "needs an image input"],
         config_text=cnn.replace('"fc:32"]', '"fc:32", "conv:4:3"]'))
    case("bn-after-pool", ["--set", 'model.batch_norm_layers=["pool1"]'], ["model.batch_norm_layers", "pooling layer 'pool1'"],
         config_text=cnn)
    case("memory", ["--set", "model.hidden=[100000000, 32]"], ["model.hidden", "GiB per rank"])
    case("memory-2-ranks", ["--set", "model.hidden=[100000000, 32]"], ["model.hidden", "GiB per rank"], mpi=True)
    case("dropout-one", ["--set", "model.dropout=1.0"], ["model.dropout", "[0, 1)"])
    case("duplicate-targets", [], ["duplicate-targets.toml:23: regularizer[0].targets", "given twice"],
         config_text=BASE.replace('targets = ["h2"]', 'targets = ["h2", "h2"]'))
    case("duplicate-entries", [], ["regularizer[1].targets", "also regularizer[0]"],
         config_text=BASE + '\n[[regularizer]]\nname = "cw-cr"\nweight = 0.5\ntargets = ["h2"]\n')
    case("cuda", ["--set", "train.device=cuda"], ["train.device", "no CUDA device"])
    case("single-under-mpirun", ["--set", "distributed.backend=single"], ["distributed.backend", "started 2 ranks"], mpi=True)
    case("nccl-on-cpu", ["--set", "distributed.backend=nccl"], ["distributed.backend", "train.device"])
    case("stray-label", ["--set", "data.source=idx", "--set", f"data.dir={idx}", "--set", "data.train_size=0",
                         "--set", "data.validation_size=0", "--set", "data.test_size=0", "--set", 'eval.layers=[]'],
         ["train-labels-idx1-ubyte", "labels go up to 200", "never occur"])
    case("fashion-label-range", ["--set", "data.source=fashion-mnist", "--set", f"data.dir={idx}", "--set", "data.train_size=0",
                                 "--set", "data.validation_size=0", "--set", "data.test_size=0"],
         ["train-labels-idx1-ubyte", "label 200 of sample 7"])
    code, text = run([bin, "train", work, "--out", os.path.join(work, "out-dir")])
    check(code == 2 and "is a directory" in text and not os.path.exists(os.path.join(work, "out-dir")),
          "a directory given as CONFIG is refused", text)
    code, text = run([bin, "train", config, "--bogus"])
    check(code == 2 and "--bogus" in text, "an unknown option is refused", text)

    print("inspect: non-finite values and label ranges")
    z = os.path.join(work, "z.csv")
    open(z, "w").write("1,2,3\n4,nan,6\n7,8,9\n")
    code, text = run([bin, "inspect", z])
    check(code == 2 and "row 1, column 1" in text and "finite" in text, "inspect names the nan cell", text)
    no_stack(text, "inspect nan")
    good = os.path.join(work, "g.csv")
    open(good, "w").write("1,2\n3,5\n4,1\n")
    labels = os.path.join(work, "y.csv")
    open(labels, "w").write("0\n-1\n1\n")
    code, text = run([bin, "inspect", good, "--labels", labels, "--penalty", "cw-cr"])
    check(code == 2 and "y.csv: row 1" in text and "non-negative" in text, "inspect names a negative label's row", text)


def group_signals(bin, work, config):
    print("signals stop at a step boundary")
    long_run = ["--set", "train.steps=100000", "--set", "train.progress_s=0.2"]
    for mpi, sig, expected in ((False, signal.SIGINT, 130), (False, signal.SIGTERM, 143), (True, signal.SIGINT, 143)):
        out = os.path.join(work, f"s-{int(mpi)}-{sig}")
        cmd = (MPIRUN if mpi else []) + [bin, "train", config, "--out", out] + long_run
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=MPI_ENV)
        deadline = time.time() + 60
        while time.time() < deadline and not os.path.exists(os.path.join(out, "steps.jsonl")):
            time.sleep(0.1)
        time.sleep(1.5)  # several progress lines (every 0.2 s) and many steps
        p.send_signal(sig)  # under mpirun: to mpirun, which forwards SIGTERM to the ranks
        try:
            text, _ = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            text = "TIMEOUT"
        label = f"{'mpirun -np 2' if mpi else '1 process'} {signal.Signals(sig).name}"
        if not mpi:
            check(p.returncode == expected, f"{label}: exit {expected}", f"exit {p.returncode}\n{text}")
        r = result(out)
        check(r["status"] == "interrupted" and r["exit_code"] == expected and 0 < r["step"] < 100000,
              f"{label}: result.json interrupted at step {r.get('step')}", json.dumps(r)[:400])
        lines = step_lines(out)
        check(lines[-1]["step"] == r["step"], f"{label}: steps.jsonl ends at the stop step")
        check("step " in text and "ETA" in text, f"{label}: progress lines were printed", text[-500:])
        no_stack(text, label)


FUZZ_KEYS = ["data.train_size", "data.validation_size", "data.test_size", "data.num_classes", "data.seed",
             "model.hidden", "model.dropout", "model.activation", "model.leaky_slope", "model.batch_norm_layers",
             "model.dropout_layers", "optim.lr", "optim.name", "optim.momentum", "optim.beta1", "optim.eps",
             "train.batch_size", "train.steps", "train.epochs", "train.threads", "train.log_every", "train.seed",
             "eval.batch_size", "eval.layers", "eval.tdv_dims", "eval.ud_fractions", "eval.clustering",
             "regularizer.weight", "regularizer.targets", "regularizer.name", "regularizer.margin",
             "distributed.timeout_s", "train.progress_s", "ünïcödé.kéy", "model.ü", "[x]"]
FUZZ_VALUES = ["0", "-1", "1", "3", "1e308", "-1e308", "nan", "inf", "9223372036854775807", "-9223372036854775808",
               "[]", "[0]", "[-5]", "[1, 2]", '["h1"]', '["nope"]', '"text"', "true", "{}", "{ k = 2 }",
               '"ü"', "0.5", "2.5", '""', "[[]]", '["h1", "h1"]', "1e-30"]


# Legal but extreme values: half of the edits use these, so the fuzz also trains (and diverges).
PLAUSIBLE = {"optim.lr": ["0.5", "1e-4", "9.9", "1e-30"], "train.batch_size": ["1", "7", "100000"],
             "model.hidden": ["[1]", "[3, 5, 7]", "[2000]"], "data.train_size": ["50", "100000", "0"],
             "data.validation_size": ["0", "599", "600"], "eval.batch_size": ["1", "7"],
             "regularizer.weight": ["0", "1e6", "1e30"], "model.dropout": ["0.9", "0.0"], "optim.momentum": ["0.999"],
             "train.log_every": ["5", "1000"], "eval.tdv_dims": ["[1, 64]"], "eval.ud_fractions": ["[0, 1]"],
             "model.activation": ['"tanh"', '"linear"', '"sigmoid"'], "optim.name": ['"sgd"', '"rmsprop"'],
             "data.num_classes": ["2", "10", "11"], "regularizer.name": ['"rr"', '"lmulti"', '"corr"', '"l1w"']}


def group_fuzz(bin, work, config, seed=13, cases=48):
    print(f"fuzz: {cases} random config edits (seed {seed})")
    rng = random.Random(seed)
    counts = {}
    for i in range(cases):
        sets = []
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.5:
                key = rng.choice(sorted(PLAUSIBLE))
                sets += ["--set", f"{key}={rng.choice(PLAUSIBLE[key])}"]
            else:
                sets += ["--set", f"{rng.choice(FUZZ_KEYS)}={rng.choice(FUZZ_VALUES)}"]
        out = os.path.join(work, f"f{i}")
        code, text = run([bin, "train", config, "--out", out, "-q", "--set", "train.steps=3"] + sets, timeout=60)
        counts[code] = counts.get(code, 0) + 1
        errors = [l for l in text.splitlines() if l.startswith("repshape: error:")]
        if code == 2:
            ok = len(errors) == 1 and not os.path.exists(out)
        elif code == 0:
            ok = result(out)["status"] == "ok"
        elif code == 4:  # a legal config that diverges (lr = 1e308) must say so
            ok = result(out)["status"] == "diverged"
        else:
            ok = False
        if not ok or any(m in text for m in STACK_MARKERS):
            check(False, f"fuzz case {i} {' '.join(sets)}: exit {code}", text[-1500:])
    check(counts.get(0, 0) >= 5 and counts.get(2, 0) >= 5,
          f"fuzz exit codes {dict(sorted((str(k), v) for k, v in counts.items()))}: both trainings and refusals")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--group", required=True, choices=["rundir", "diverged", "input", "signals", "fuzz"])
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix=f"repshape-robust-{args.group}-")
    config = os.path.join(work, "base.toml")
    open(config, "w").write(BASE)
    globals()["group_" + args.group](args.bin, work, config)
    print(f"{args.group}: {len(failures)} failure(s)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
