#!/usr/bin/python3
"""SPEC §4 contract, end to end through the real binary: `repshape train` on W ranks under mpirun
follows the one-process trajectory. For one penalty family, trains 50 steps with a global batch of
37 (not divisible by W) on 187 samples (a short last batch of 2 rows, so at W = 3 and 4 some ranks
get an EMPTY shard), then compares against a plain single process:
  * the per-step loss, task loss and every penalty value to 1e-4 relative,
  * the summed parameter gradients of the first step to 1e-5 (relative to the largest entry),
  * each penalty's weighted contribution λΩ to 1e-4 of the loss (a single Ω can be ill-conditioned:
    corr on the 2-row short batch divides by unbiased variances of nearly constant units),
  * the evaluation losses after training to 1e-4 relative, and, on identical parameters (a run with
    epochs = 0), every evaluation figure — errors, losses, all representation metrics — to 1e-5
    (the metric GEMMs run in fp32; the signed mean covariance is a cancelling sum).
    (Errors and ReLU active-only metrics are discontinuous in the parameters, so they are compared
    where the parameters are the same by construction.)
Every run has a watchdog: a hang fails the test instead of stalling CI.
--stats-path packed|gather forces how every statistics layer crosses ranks (REPSHAPE_STATS_PATH;
the default, auto, picks per layer the path with fewer bytes), so both exact paths are held to
the same bounds."""
import argparse, json, math, os, random, subprocess, sys, tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data"))
from write_formats import write_cifar, write_strokes  # noqa: E402

BASE = """
[data]
{data_source}
seed = 3
{data_extra}

[model]
{model_shape}
activation = "{activation}"
{model_extra}

[optim]
name = "adam"
lr = 0.003

[train]
{train_extra}
steps = 50
batch_size = 37
seed = 11
timings = false

[eval]
batch_size = 40
layers = {eval_layers}
clustering = {{ k = 4, n_init = 2{clustering_extra} }}
mi = {{ sigma2 = 0.1 }}
"""

WEIGHTS = {}  # "name@layer" → λ, for the loss-relative comparison of single penalties

def reg(name, targets, **extra):
    weight = extra.get("weight", 0.1)
    for t in targets or ["*"]:
        WEIGHTS[f"{name}@{t}"] = weight
    lines = ["[[regularizer]]", f'name = "{name}"', f"weight = {extra.pop('weight', 0.1)}",
             "targets = [" + ", ".join(f'"{t}"' for t in targets) + "]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"

FAMILIES = {
    # corr as in Simon's CorrNet (SPEC §5): leaky ReLU. On ReLU units that are nearly constant over a
    # 2-row short batch the unbiased correlation is ill-conditioned and the trajectory chaotic.
    "cr_lsigma_corr": ("leaky_relu", "", reg("cr", ["h1"]) + reg("lsigma", ["h2"]) + reg("corr", ["h1", "h2"], weight=0.2)),
    "cwcr_cwvr": ("relu", "", reg("cw-cr", ["h2"], weight=0.5) + reg("cw-vr", ["h1"], normalized=True)),
    "rr_holder_cwrr": ("relu", "", reg("rr", ["h2"]) + reg("cw-rr", ["h1"], weight=0.05)),
    "rr_exact": ("relu", "", reg("rr", ["h1"], method="exact")),
    "l1r_xcov": ("relu", "", reg("l1r", ["h1"], weight=0.001) + reg("xcov", ["h2"])),
    "lmulti": ("sigmoid", "", reg("lmulti", ["h2"], margin=0.5) + reg("lmulti-unsup", ["h1"], weight=0.05)),
    "weights_lsingle": ("relu", "", reg("l1w", [], weight=0.001) + reg("l2w", ["h1", "out"], weight=0.01)
                        + reg("lsingle", ["h2"], margin=1.0)),
    "bn_dropout": ("relu", 'dropout = 0.3\ndropout_layers = ["h1"]\nbatch_norm_layers = ["h1", "h2"]',
                   reg("cw-cr", ["h2"], weight=0.2)),
    # Objectives (issue 9). binary: one logit, BCE on even/odd classes grouped by data.relabel (so the
    # class-wise penalty sees 2 groups, xcov the sigmoid probability, and clustering AMI/NMI the 10
    # original classes). mse: the output reconstructs the inputs after a PCA to 8 dims (fitted on
    # the training split), per-sample mean squared error; result.json reports test.mse.
    "binary": ("tanh", "", reg("lsigma", ["h1"]) + reg("xcov", ["h2"]) + reg("cw-vr", ["h2"], weight=0.05)),
    "mse": ("linear", "", reg("lsigma", ["h1"], weight=0.5) + reg("l1r", ["h2"], weight=0.001)),
}

# Models of issue 9 on small files in the exact source formats (tests/data/write_formats.py): an LSTM over variable-length pen strokes (Romanov §4.1: lstm → fc1 → one logit,
# digits grouped 0–4 / 5–9, clustering against the 10 digits at several k), a mirrored conv
# autoencoder (Kågebäck §3.4: strided convs, fc, code, fc, ConvTranspose2d ×2) and a CNN with
# padded, strided convolutions.
FAMILIES.update({
    "lstm": ("relu", "", reg("lsingle", ["fc1"], margin=1.0) + reg("lmulti", ["fc1"], margin=0.5)
             + reg("cr", ["lstm"]) + reg("xcov", ["fc1"])),
    # Batch norm on the deconv map dec3 (per channel). On the ReLU fc layer dec2 this tiny config is
    # chaotic: ONE process with train.threads = 2 instead of 1 leaves the trajectory at step 7 just
    # as W = 2 does (first-step gradients still agree to 6e-8).
    "conv_ae": ("relu", 'batch_norm_layers = ["dec3"]', reg("lsigma", ["code"], weight=0.5)
                + reg("l1r", ["code"], weight=0.001) + reg("cr", ["fc1"], weight=0.05)),
    "cnn_pad": ("relu", "", reg("cr", ["fc1"]) + reg("lsingle", ["fc1"], margin=1.0) + reg("l2w", ["conv2"], weight=0.01)),
})

FACTORS = 'source = "factors"\nsamples = 187\ntest_samples = 150\nfactors = 6\ninput_dim = 24'
# Per family: (data.source lines, model shape, eval.layers, extra clustering keys).
SHAPES = {
    "lstm": ('source = "strokes"\ndir = "{work}/strokes"', 'type = "lstm"\nlstm_hidden = 7\nhidden = [6]',
             '["lstm", "fc1"]', ", k_values = [2, 3]"),
    "conv_ae": ('source = "cifar10"\ndir = "{work}/cifar"',
                'type = "conv_ae"\nlayers = ["conv:4:3:2:1", "conv:5:3:2:1", "fc:12", "fc:5"]',
                '["conv2", "fc1", "code", "dec1"]', ""),
    "cnn_pad": ('source = "cifar10"\ndir = "{work}/cifar"',
                'type = "cnn"\nlayers = ["conv:4:3:1:1", "pool:2", "conv:6:3:2:2", "fc:10"]',
                '["conv2", "fc1"]', ""),
}

# Extra [data] / [train] keys of a family.
EXTRA = {
    "binary": ("relabel = [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]", 'objective = "binary"'),
    "mse": ("pca_dims = 8", 'objective = "mse"'),
    "lstm": ("relabel = [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]", 'objective = "binary"'),
    "conv_ae": ("", 'objective = "mse"'),
}

def run(cmd, timeout, env=None):
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, text=True,
                           env=env)
    except subprocess.TimeoutExpired:
        sys.exit(f"FAIL: watchdog: {' '.join(cmd)} still running after {timeout} s")
    if p.returncode != 0:
        sys.exit(f"FAIL: exit {p.returncode}: {' '.join(cmd)}\n{p.stdout}")

def numbers(obj, prefix=""):
    """Flattens a JSON object into {path: number} for every numeric leaf."""
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(numbers(v, f"{prefix}.{k}" if prefix else k))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        out[prefix] = float(obj)
    return out

def close(a, b, rel, floor=1e-9):
    return abs(a - b) <= rel * max(abs(a), abs(b), floor)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--family", required=True, choices=sorted(FAMILIES))
    ap.add_argument("--worlds", default="1,2,3,4")
    ap.add_argument("--timeout", type=int, default=120)
    ap.add_argument("--stats-path", default="auto", choices=["auto", "packed", "gather"])
    args = ap.parse_args()
    env = dict(os.environ, REPSHAPE_STATS_PATH=args.stats_path)
    activation, model_extra, regs = FAMILIES[args.family]
    work = tempfile.mkdtemp(prefix=f"repshape-equiv-{args.family}-")
    config = os.path.join(work, "c.toml")
    source, shape, layers, clustering = SHAPES.get(args.family, (FACTORS, "hidden = [16, 12]", '["h1", "h2"]', ""))
    rng = random.Random(5)
    if "strokes" in source:
        write_strokes(os.path.join(work, "strokes"), rng)
    if "cifar" in source:
        write_cifar(os.path.join(work, "cifar"), rng)
    with open(config, "w") as f:
        data_extra, train_extra = EXTRA.get(args.family, ("", ""))
        f.write(BASE.format(activation=activation, model_extra=model_extra, data_extra=data_extra,
                            train_extra=train_extra, data_source=source.format(work=work), model_shape=shape,
                            eval_layers=layers, clustering_extra=clustering) + regs)

    def train(world, extra=()):
        out = os.path.join(work, f"w{world}{'-'.join(extra)}")
        cmd = [args.bin, "train", config, "--out", out, "--dump-gradients", os.path.join(work, f"grad{world}.txt")]
        for e in extra:
            cmd += ["--set", e]
        if world > 0:
            cmd = ["mpirun", "-np", str(world), "--oversubscribe", "--bind-to", "none", "--mca", "btl", "self,vader"] + cmd
        run(cmd, args.timeout, env)
        steps = [json.loads(l) for l in open(os.path.join(out, "steps.jsonl"))]
        if extra:
            return json.load(open(os.path.join(out, "result.json")))
        grads = [float(x) for x in open(os.path.join(work, f"grad{world}.txt"))]
        result = json.load(open(os.path.join(out, "result.json")))
        return steps, grads, result

    ref_steps, ref_grads, ref_result = train(0)  # plain process, single backend
    untrained = ("train.epochs=0", "train.steps=0")
    ref_untrained = train(0, untrained)
    assert len(ref_steps) == 50, len(ref_steps)
    gmax = max(abs(g) for g in ref_grads)
    assert gmax > 0, "reference gradient is zero: the test would be vacuous"
    failures = []
    for world in [int(w) for w in args.worlds.split(",")]:
        steps, grads, result = train(world)
        worst = 0.0
        for s_ref, s in zip(ref_steps, steps):
            loss = abs(s_ref["loss"])
            for key, value in numbers(s_ref).items():
                if key in ("stats_bytes", "grad_bytes"):
                    continue  # communication volume legitimately depends on W
                other = numbers(s).get(key)
                if key == "penalty" or key.startswith("penalties."):
                    weight = 1.0 if key == "penalty" else WEIGHTS[key.split(".", 1)[1]]
                    ok = other is not None and abs(value - other) * weight <= 1e-4 * loss
                else:
                    ok = other is not None and close(value, other, 1e-4)
                if not ok:
                    failures.append(f"W={world} step {s_ref['step']} {key}: {other} vs 1-process {value}")
                else:
                    worst = max(worst, abs(value - other) / max(abs(value), 1e-9))
        if len(steps) != len(ref_steps):
            failures.append(f"W={world}: {len(steps)} steps logged, expected {len(ref_steps)}")
        gdiff = max(abs(a - b) for a, b in zip(grads, ref_grads)) if len(grads) == len(ref_grads) else math.inf
        if gdiff > 1e-5 * gmax:
            failures.append(f"W={world}: first-step gradient differs by {gdiff:.3g} (max |g| {gmax:.3g})")
        w_numbers = numbers(result)
        for key, value in numbers(ref_result).items():
            if key.endswith(".loss") and not close(value, w_numbers.get(key, math.inf), 1e-4):
                failures.append(f"W={world} result.{key}: {w_numbers.get(key)} vs 1-process {value}")
        w_untrained = numbers(train(world, untrained))
        ref_numbers_untrained = numbers(ref_untrained)
        for key, value in ref_numbers_untrained.items():
            if key in ("world_size", "steps", "epochs") or key.endswith("wall_s"):
                continue
            # The covariance and correlation metrics are means of signed pair terms that can cancel
            # to far below the terms themselves (cnn_pad fc1: -5.7e-7 from covariances of order
            # amplitude²): their summation-order error is relative to the terms' scale, amplitude²
            # and 1, not to the mean.
            floor = 1e-9
            if key.endswith(".covariance"):
                floor = max(floor, ref_numbers_untrained.get(key[: -len("covariance")] + "amplitude", 0.0) ** 2)
            elif key.endswith(".correlation"):
                floor = 1.0
            if key not in w_untrained or not close(value, w_untrained[key], 1e-5, floor=floor):
                failures.append(f"W={world} untrained result.{key}: {w_untrained.get(key)} vs 1-process {value}")
        print(f"W={world}: worst per-step relative loss difference {worst:.2e}, gradient max diff {gdiff:.2e} (max |g| {gmax:.2e})")
    if failures:
        print("FAIL:\n  " + "\n  ".join(failures[:40]))
        sys.exit(1)
    print(f"PASS {args.family} (statistics path {args.stats_path})")

main()
