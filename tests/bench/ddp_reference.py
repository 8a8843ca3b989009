#!/usr/bin/python3
"""Python reference for the two-rank comparison (issue 12, target 2): the Choi MNIST MLP
(784→6×100 ReLU→10, Adam lr 1e-4) with a GLOBAL class-wise covariance penalty (cw-CR, SPEC §2) on
hidden layer 5, trained with torch.distributed DDP (gloo, one thread per process) on W processes,
global batch B split evenly. The class sums and Grams are summed over ranks with the
differentiable torch.distributed.nn.all_reduce, so every rank sees the global statistics (the
same maths as repshape's packed path). Fashion-MNIST, as train_reference.py.

  ddp_reference.py WORLD GLOBAL_BATCH STEPS [TRAIN_SIZE] [--no-penalty]

Prints one JSON line (rank 0): samples/s over steps 21..STEPS, the final loss."""
import json, os, sys, tempfile, time

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.nn as dnn
import torch.multiprocessing as mp

from train_reference import idx  # the IDX reader of the one-process reference

K, LAMBDA = 10, 1e-3


class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        widths = [784] + [100] * 6
        self.hidden = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(widths, widths[1:]))
        self.out = torch.nn.Linear(100, 10)

    def forward(self, x):
        h5 = None
        for i, layer in enumerate(self.hidden):
            x = torch.relu(layer(x))
            if i == 4:
                h5 = x
        return self.out(x), h5


def cw_cr(z, y, world):
    """½ Σ_k Σ_{i≠j} C_k,ij², C_k = G_k/n_k − μ_k μ_kᵀ from global class sums (SPEC §2 cw-cr)."""
    rows = [z[y == k] for k in range(K)]                               # K × [n_k, M]
    counts = torch.tensor([float(r.shape[0]) for r in rows])           # [K]
    sums = torch.stack([r.sum(0) for r in rows])                       # [K, M]
    grams = torch.stack([r.t() @ r for r in rows])                     # [K, M, M]
    if world > 1:
        counts = dnn.all_reduce(counts)
        sums = dnn.all_reduce(sums)
        grams = dnn.all_reduce(grams)
    nk = counts.clamp_min(1.0)
    mean = sums / nk[:, None]
    cov = grams / nk[:, None, None] - mean[:, :, None] * mean[:, None, :]
    return 0.5 * (cov.square().sum() - torch.diagonal(cov, 0, 1, 2).square().sum())


def worker(rank, world, batch, steps, train_size, penalty, store, queue):
    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    torch.manual_seed(1)
    root = "/usr/share/datasets/fashion-mnist/"
    x = torch.from_numpy(idx(root + "train-images-idx3-ubyte.gz")[:train_size].reshape(train_size, -1)
                         .astype(np.float32) / 255.0)
    y = torch.from_numpy(idx(root + "train-labels-idx1-ubyte.gz")[:train_size].astype(np.int64))
    model = Mlp()
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    local = batch // world
    perm = torch.randperm(train_size)
    step, start = 0, time.perf_counter()
    while step < steps:
        for b in range(0, train_size - batch + 1, batch):
            if step == steps:
                break
            if step == 20:
                start = time.perf_counter()
            index = perm[b + rank * local: b + (rank + 1) * local]
            logits, h5 = net(x[index])
            # DDP averages gradients over ranks: scale the local sum so the average is the global mean.
            loss = torch.nn.functional.cross_entropy(logits, y[index], reduction="sum") * world / batch
            if penalty:
                # all_reduce's backward sums the W identical gradients and DDP divides by W: unscaled.
                loss = loss + LAMBDA * cw_cr(h5, y[index], world)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
    elapsed = time.perf_counter() - start
    if rank == 0:
        queue.put({"world": world, "global_batch": batch, "penalty": "cw-cr" if penalty else "none",
                   "samples_per_s": (steps - 20) * batch / elapsed, "final_loss": loss.item()})
    if world > 1:
        dist.destroy_process_group()


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    world, batch, steps = int(args[0]), int(args[1]), int(args[2])
    train_size = int(args[3]) if len(args) > 3 else 10000
    penalty = "--no-penalty" not in sys.argv
    if batch % world:
        sys.exit(f"ddp_reference: global batch {batch} not divisible by world {world}")
    store = tempfile.mktemp(prefix="ddp-store-")
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(r, world, batch, steps, train_size, penalty, store, queue))
             for r in range(world)]
    for p in procs:
        p.start()
    result = queue.get(timeout=900)
    for p in procs:
        p.join()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
