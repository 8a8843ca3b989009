#!/usr/bin/python3
"""Cost model of one data-parallel step of the Choi CIFAR-100 job with cw-CR (issue 12, target 7).

    step(W) = t0 + c · B_local + T_stats(W) + T_grad(W) [− what overlaps backward]

  B_local  = per-rank batch (strong scaling: 500 / W; weak scaling: 500)
  c, t0    = compute per sample and fixed per-step cost (measured here on CPU; assumed for GPUs)
  T_stats  = the penalty's exact global statistics, the cheaper of two exact paths (SPEC §4):
             all-reduce of the packed sums, 8·(K+1)(1+M+M²) bytes, whatever the batch, or
             all-gather of the rows, 4·N·M bytes (+ labels), N the global batch
  T_grad   = all-reduce of the fp32 gradients, 4·P bytes
  T_share  = on CPU rows only (the check here, not the GPU projection): the gather path splits
             cw-cr by class across ranks and reduce-scatters the N × M fp32 gradient of the shares
             (each rank keeps its own rows of the sum)
  α–β:     all-reduce 2·log2(W)·α + 2(W−1)/W · S/β, all-gather and reduce-scatter
           log2(W)·α + (W−1)/W · S/β (MPI's reduce-scatter is a ring: (W−1)·α; at W = 2 the same)
           (tree latency, ring bandwidth: what NCCL picks for small and large messages)

--measure checks the model on this machine: it fits α, β of MPI here from bench_collectives
(mpirun -np 2), c and t0 from `repshape train` on one rank at two batch sizes, predicts the
2-rank step and compares it with a measured 2-rank run of the same job. The GPU projection then
uses the stated assumptions (--gpu-*); nothing of it was measured on a GPU.

Usage: tests/bench/cost_model.py [--build BUILD] [--measure] [--svg FILE]
"""
import argparse, json, math, os, re, statistics, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# Choi et al. Table 7 CNN on 3x32x32 (convolutions 3x3, stride 1, 'same' padding), FC 128, K = 100.
LAYERS = ["conv:32:3", "conv:64:3", "pool:2", "conv:128:3", "pool:2", "conv:128:3", "pool:2", "fc:128"]
K, M, BATCH = 100, 128, 500


def model_size(layers=LAYERS, classes=K):
    """(parameters, forward multiply-adds per sample) of the CNN, walking the shapes."""
    c, h, w, params, macs, flat = 3, 32, 32, 0, 0, None
    for spec in layers:
        kind, *a = spec.split(":")
        if kind == "conv":
            out, k = int(a[0]), int(a[1])
            params += c * out * k * k + out
            macs += c * out * k * k * h * w
            c = out
        elif kind == "pool":
            h, w = h // int(a[0]), w // int(a[0])
        else:
            flat = flat or c * h * w
            params += flat * int(a[0]) + int(a[0])
            macs += flat * int(a[0])
            flat = int(a[0])
    params += flat * classes + classes
    macs += flat * classes
    return params, macs


def allreduce(size, w, alpha, beta):
    return 0.0 if w == 1 else 2 * math.log2(w) * alpha + 2 * (w - 1) / w * size / beta


def allgather(size, w, alpha, beta):
    return 0.0 if w == 1 else math.log2(w) * alpha + (w - 1) / w * size / beta


def stats_paths(global_rows, w, alpha, beta):
    """Seconds of both exact paths and the one chosen."""
    packed = allreduce(8 * (K + 1) * (1 + M + M * M), w, alpha, beta)
    gather = allgather((4 * M + 8) * global_rows, w, alpha, beta)  # fp32 rows + fp64 label
    return packed, gather, min(packed, gather)


def step(w, local_rows, c, t0, alpha, beta, params, overlap, split=False):
    """(step seconds, stats seconds, path) for W ranks with local_rows each."""
    compute = t0 + c * local_rows
    packed, gather, stats = stats_paths(local_rows * w, w, alpha, beta)
    if split and gather < packed:  # the shares' gradient reduce-scatter (REPSHAPE_SPLIT_CLASSES)
        stats += allgather(4 * M * local_rows * w, w, alpha, beta)  # same α–β cost as an all-gather
    grad = allreduce(4 * params, w, alpha, beta)
    hidden = min(grad, overlap * (2 / 3) * c * local_rows)  # backward is ~2/3 of the compute
    path = "—" if w == 1 else "packed" if packed <= gather else "gather"
    return compute + stats + grad - hidden, stats, path


# ---------------------------------------------------------------------------------- measure here
def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def write_cifar100(path, n, seed):
    import random
    rng = random.Random(seed)
    with open(path, "wb") as f:
        for _ in range(n):
            fine = rng.randrange(K)
            f.write(bytes([fine // 5, fine]) + rng.randbytes(3072))


def train_steps(build, data, batch, ranks, steps, tmp):
    out = os.path.join(tmp, f"run-w{ranks}-b{batch}")
    cfg = os.path.join(tmp, "cnn.toml")
    with open(cfg, "w") as f:
        f.write(f"""[data]
source = "cifar100"
dir = "{data}"
test_size = 100
[model]
type = "cnn"
layers = {json.dumps(LAYERS)}
[optim]
name = "adam"
lr = 1e-4
[train]
steps = {steps}
batch_size = {batch}
threads = 1
[eval]
layers = []
[[regularizer]]
name = "cw-cr"
weight = 0.01
targets = ["fc1"]
""")
    cmd = [os.path.join(build, "runner", "repshape"), "train", cfg, "--out", out, "--quiet"]
    if ranks > 1:
        cmd = ["mpirun", "-np", str(ranks), "--oversubscribe", "--bind-to", "none"] + cmd
    run(cmd)
    rows = [json.loads(l) for l in open(os.path.join(out, "steps.jsonl"))][2:]  # skip warm-up
    return {k: statistics.median(r[k] for r in rows if k in r)
            for k in ("samples_per_s", "stats_comm_s", "grad_comm_s")} | {"batch": batch}


def measure(build, steps):
    env_root = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    os.environ.update(env_root)
    text = run([os.path.join(ROOT, "tests", "mpirun_test.sh"), "2", "300",
                os.path.join(build, "tests", "bench", "bench_collectives"), "--iters", "10"])
    ms = {name.strip(): float(t) * 1e-3 for name, t in
          re.findall(r"^(all-reduce 1 double|all-reduce cw-cr stats)\s.*?median\s+([\d.]+) ms", text, re.M)}
    size = 8 * (K + 1) * (1 + M + M * M)
    alpha = ms["all-reduce 1 double"] / 2          # 2·log2(2)·α
    beta = size / (ms["all-reduce cw-cr stats"] - 2 * alpha)  # bytes/s, with 2(W-1)/W = 1
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "cifar100")
        os.makedirs(data)
        write_cifar100(os.path.join(data, "train.bin"), 2 * BATCH, 1)
        write_cifar100(os.path.join(data, "test.bin"), 100, 2)
        small = train_steps(build, data, BATCH // 2, 1, steps, tmp)
        full = train_steps(build, data, BATCH, 1, steps, tmp)
        two = train_steps(build, data, BATCH, 2, steps, tmp)
    t_small, t_full = small["batch"] / small["samples_per_s"], full["batch"] / full["samples_per_s"]
    c = (t_full - t_small) / (BATCH - BATCH // 2)
    t0 = max(0.0, t_full - c * BATCH)
    return dict(alpha=alpha, beta=beta, c=c, t0=t0, t1=t_full, t_half=t_small,
                t2=two["batch"] / two["samples_per_s"], t2_stats=two["stats_comm_s"],
                t2_grad=two["grad_comm_s"])


# --------------------------------------------------------------------------------------- report
def svg_plot(curves, path):
    """Efficiency vs W (log2 axis) as a small self-contained SVG."""
    width, height, left, top, plot_w, plot_h = 560, 320, 60, 20, 460, 240
    ws = sorted({w for _, pts in curves for w, _ in pts})
    x = lambda w: left + plot_w * (math.log2(w) - math.log2(ws[0])) / (math.log2(ws[-1]) - math.log2(ws[0]))
    y = lambda e: top + plot_h * (1 - e)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
           f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/>']
    for e in (0, 0.25, 0.5, 0.75, 1.0):
        out.append(f'<text x="{left - 6}" y="{y(e) + 4}" text-anchor="end">{e:.2f}</text>')
    for w in ws:
        out.append(f'<text x="{x(w)}" y="{top + plot_h + 14}" text-anchor="middle">{w}</text>')
    out.append(f'<text x="{left + plot_w / 2}" y="{height - 4}" text-anchor="middle">GPUs (W)</text>')
    out.append(f'<text x="14" y="{top + plot_h / 2}" transform="rotate(-90 14 {top + plot_h / 2})" text-anchor="middle">parallel efficiency</text>')
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    for i, (name, pts) in enumerate(curves):
        line = " ".join(f"{x(w):.1f},{y(max(0, min(1, e))):.1f}" for w, e in pts)
        out.append(f'<polyline points="{line}" fill="none" stroke="{colours[i]}" stroke-width="2"/>')
        legend_x, legend_y = left + 0.62 * plot_w, top + 0.35 * plot_h  # empty middle right
        out.append(f'<text x="{legend_x}" y="{legend_y + 14 * i}" fill="{colours[i]}">{name}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--measure", action="store_true", help="check the model against 1 and 2 ranks here")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--svg", help="write the efficiency plot here")
    # GPU assumptions (H100-class nodes of 8 GPUs); none of these were measured.
    ap.add_argument("--gpu-tflops", type=float, default=20.0, help="sustained fp32 TFLOP/s on this CNN")
    ap.add_argument("--gpu-t0-ms", type=float, default=1.0, help="fixed per-step cost (launches, Adam)")
    ap.add_argument("--nvlink-gbs", type=float, default=300.0, help="intra-node bus bandwidth, GB/s")
    ap.add_argument("--ib-gbs", type=float, default=45.0, help="inter-node bandwidth per GPU, GB/s")
    ap.add_argument("--alpha-us", type=float, default=8.0, help="per-hop latency, µs")
    args = ap.parse_args()

    params, macs = model_size()
    print(f"Choi CIFAR-100 CNN: {params:,} parameters, {macs / 1e6:.1f} M multiply-adds/sample forward; "
          f"cw-cr on fc1 (M={M}, K={K}), global batch {BATCH}")
    print(f"  packed statistics {8 * (K + 1) * (1 + M + M * M):,} B/step; gathered rows {(4 * M + 8) * BATCH:,} B "
          f"at N={BATCH}; gradients {4 * params:,} B")
    if args.measure:
        m = measure(args.build, args.steps)
        # Compute is not linear in the batch on a CPU (batch-500 conv activations spill the caches),
        # so the check uses the compute measured at the per-rank batch, B/2 on one rank.
        c_half = m["t_half"] / (BATCH // 2)
        pred, stats, path = step(2, BATCH // 2, c_half, 0.0, m["alpha"], m["beta"], params, 0.0, split=True)
        linear = step(2, BATCH // 2, m["c"], m["t0"], m["alpha"], m["beta"], params, 0.0, split=True)[0]
        print("\nMeasured here (MPI, CPU, 1 thread per rank):")
        print(f"  α = {m['alpha'] * 1e6:.1f} µs, β = {m['beta'] / 1e9:.2f} GB/s (bench_collectives, W=2); "
              f"c = {m['c'] * 1e3:.2f} ms/sample, t0 = {m['t0'] * 1e3:.1f} ms (W=1 at B=250 and 500)")
        print(f"  W=1 step {m['t1'] * 1e3:.0f} ms at B=500, {m['t_half'] * 1e3:.0f} ms at B=250 "
              f"(not linear: a linear c·B + t0 would predict W=2 at {linear * 1e3:.0f} ms)")
        print(f"  W=2 step predicted {pred * 1e3:.0f} ms "
              f"(stats {stats * 1e3:.1f} ms via {path}), measured {m['t2'] * 1e3:.0f} ms "
              f"(stats {m['t2_stats'] * 1e3:.1f} ms, grads {m['t2_grad'] * 1e3:.1f} ms): "
              f"error {100 * (pred / m['t2'] - 1):+.0f} %")
        print(f"  speed-up W=2 / W=1: predicted {m['t1'] / pred:.2f}x, measured {m['t1'] / m['t2']:.2f}x")

    c = 3 * macs * 2 / (args.gpu_tflops * 1e12)  # forward + backward ≈ 3× forward, 2 FLOP per MAC
    t0 = args.gpu_t0_ms * 1e-3
    alpha = args.alpha_us * 1e-6
    print(f"\nGPU projection (assumed: {args.gpu_tflops:g} TFLOP/s sustained, t0 {args.gpu_t0_ms:g} ms, "
          f"NVLink {args.nvlink_gbs:g} GB/s within 8-GPU nodes, {args.ib_gbs:g} GB/s per GPU across, α {args.alpha_us:g} µs)")
    print("| W | strong: rows/GPU | step ms | stats path | efficiency | weak (500/GPU): step ms | stats path | efficiency |")
    print("|---|---|---|---|---|---|---|---|")
    curves = {"strong, sync gradients": [], "strong, overlapped": [], "weak, sync gradients": [], "weak, overlapped": []}
    base_strong = step(1, BATCH, c, t0, alpha, 1, params, 0)[0]
    for w in [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]:
        beta = (args.nvlink_gbs if w <= 8 else args.ib_gbs) * 1e9
        rows = BATCH / w
        s_sync, _, s_path = step(w, rows, c, t0, alpha, beta, params, 0.0)
        s_ovl = step(w, rows, c, t0, alpha, beta, params, 1.0)[0]
        w_sync, _, w_path = step(w, BATCH, c, t0, alpha, beta, params, 0.0)
        w_ovl = step(w, BATCH, c, t0, alpha, beta, params, 1.0)[0]
        eff = lambda t, weak: (base_strong / t) if weak else base_strong / (w * t)
        curves["strong, sync gradients"].append((w, eff(s_sync, False)))
        curves["strong, overlapped"].append((w, eff(s_ovl, False)))
        curves["weak, sync gradients"].append((w, eff(w_sync, True)))
        curves["weak, overlapped"].append((w, eff(w_ovl, True)))
        print(f"| {w} | {rows:.1f} | {s_sync * 1e3:.2f} | {s_path} | {eff(s_sync, False):.2f} | "
              f"{w_sync * 1e3:.2f} | {w_path} | {eff(w_sync, True):.2f} |")
    if args.svg:
        svg_plot(list(curves.items()), args.svg)
        print(f"\nplot: {args.svg}")


if __name__ == "__main__":
    main()
