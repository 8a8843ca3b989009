#!/usr/bin/env python3
"""Independent PyTorch/NumPy reference for the penalties (SPEC §2) and metrics (SPEC §3).

Written from the formulas, not from the C++: two-pass covariances, per-class loops, explicit pair
loops for the KL hinges, the spectral norm from an SVD. Usage:

  reference.py DIR     reads DIR/{z,labels,probs,w}.csv and DIR/cases.txt (one penalty spec per
                       line, `name[:key=value,...]`, keys margin/normalized/method), writes DIR/ref_values.txt ("spec value"),
                       DIR/ref_grad_<stem>.csv (dΩ/dZ or dΩ/dW) and DIR/ref_metrics.txt
                       ("relu name value|null" for relu in {0, 1}, on z and on relu(z)).
DIR/classes.txt holds K, the number of classes of the task.
"""
import os
import sys

import numpy as np
import torch

torch.set_default_dtype(torch.float64)


def load(d, name):
    path = os.path.join(d, name)
    if not os.path.exists(path):
        return None
    return np.atleast_2d(np.loadtxt(path, delimiter=",", ndmin=2))


def cov_two_pass(z):
    zc = z - z.mean(0, keepdim=True)
    return zc.T @ zc / z.shape[0]


def rr_value(z, method):
    fro = (z ** 2).sum()
    if method == "exact":
        spec = torch.linalg.svdvals(z)[0] ** 2
    else:
        spec = z.abs().sum(0).max() * z.abs().sum(1).max()
    return fro / spec


def kl(p_log, q_log):
    return (p_log.exp() * (p_log - q_log)).sum()


def penalty(name, opts, z, y, p, w, K):
    N, M = z.shape
    margin = float(opts.get("margin", 1.0))
    method = opts.get("method", "holder")
    classes = [k for k in range(K) if (y == k).sum() > 0]
    if name == "lsigma":
        cu = cov_two_pass(z) * N / (N - 1)
        v = cu.abs().sum() / M ** 2
    elif name in ("cr", "decov"):
        c = cov_two_pass(z)
        v = 0.5 * ((c ** 2).sum() - (torch.diagonal(c) ** 2).sum())
    elif name == "cw-cr":
        v = 0
        for k in classes:
            c = cov_two_pass(z[y == k])
            v = v + 0.5 * ((c ** 2).sum() - (torch.diagonal(c) ** 2).sum())
    elif name == "vr":
        v = z.var(0, unbiased=False).sum()
    elif name == "cw-vr":
        v = sum(z[y == k].var(0, unbiased=False).sum() for k in classes)
    elif name == "l1r":
        v = z.abs().sum()
    elif name == "rr":
        v = rr_value(z, method)
    elif name == "cw-rr":
        v = sum(rr_value(z[y == k], method) for k in classes)
    elif name == "corr":
        cu = cov_two_pass(z) * N / (N - 1)
        sd = torch.sqrt(torch.diagonal(cu) + 1e-8)
        v = ((cu / torch.outer(sd, sd)) ** 2).sum() / (2 * M)
    elif name == "xcov":
        x = (p - p.mean(0)).T @ (z - z.mean(0)) / N
        v = 0.5 * (x ** 2).sum()
    elif name == "lsingle":
        d = torch.log_softmax(w, 1)
        v = 0
        for i in range(w.shape[0]):
            for j in range(i + 1, w.shape[0]):
                v = v + torch.relu(margin - kl(d[i], d[j])) + torch.relu(margin - kl(d[j], d[i]))
    elif name in ("lmulti", "lmulti-unsup"):
        q = torch.log_softmax(z, 1)
        v, norm = 0, 0
        for i in range(N):
            for j in range(N):
                if name == "lmulti" and y[i] != y[j]:
                    continue
                norm += 1
                v = v + torch.relu(margin - kl(q[i], q[j])) + torch.relu(margin - kl(q[j], q[i]))
        v = v / norm  # Σ_k n_k² same-class ordered pairs, or N²
    elif name == "l1w":
        v = w.abs().sum()
    elif name == "l2w":
        v = (w ** 2).sum()
    else:
        raise ValueError(name)
    if opts.get("normalized") in ("true", "1"):
        div = {"cr": M * (M - 1) / 2, "cw-cr": M * (M - 1) / 2 * K, "vr": M, "l1r": M, "rr": M,
               "cw-vr": M * K, "cw-rr": M * K}[name]
        v = v / div
    return v


def metrics(z, relu):
    z = np.asarray(z, dtype=np.float64)
    N, M = z.shape
    c = np.cov(z.T, bias=True).reshape(M, M)
    var = np.diag(c)
    tr = var.sum()
    out = {}
    valid = var > 1e-12
    s, any_pair = 0.0, False
    for i in range(M):
        for j in range(i + 1, M):
            if valid[i] and valid[j]:
                any_pair = True
                s += abs(c[i, j]) / np.sqrt(var[i] * var[j])
    out["mapc"] = s / (M * (M - 1) / 2) if any_pair else None
    out["cvr"] = np.abs(c).sum() / tr if tr > 0 else None
    desc = np.sort(var)[::-1]
    out["tdv@4"] = desc[:4].sum() / tr if tr > 0 else None

    def reach(vals, x):
        total = vals.sum()
        if total <= 0:
            return None
        acc = 0.0
        for i, v in enumerate(vals):
            acc += v
            if acc >= x * total * (1 - 1e-12):
                return float(i + 1)
        return float(len(vals))

    out["ud@0.9"] = reach(desc, 0.9)
    eig = np.clip(np.sort(np.linalg.eigvalsh(c))[::-1], 0, None)
    out["ud_eig@0.9"] = reach(eig, 0.9)
    off = [(i, j) for i in range(M) for j in range(M) if i != j]
    if relu:
        pos = z[z > 0]
        out["amplitude"] = pos.mean() if pos.size else None
        covs, cors = [], []
        for i, j in off:
            both = (z[:, i] > 0) & (z[:, j] > 0)
            if both.sum() == 0:
                continue
            a, b = z[both, i], z[both, j]
            cij = (a * b).mean() - a.mean() * b.mean()
            covs.append(cij)
            va, vb = a.var(), b.var()
            if va > 1e-12 and vb > 1e-12:
                cors.append(cij / np.sqrt(va * vb))
        out["covariance"] = np.mean(covs) if covs else None
        out["correlation"] = np.mean(cors) if cors else None
    else:
        out["amplitude"] = np.abs(z).mean()
        out["covariance"] = np.mean([c[i, j] for i, j in off]) if off else None
        cors = [c[i, j] / np.sqrt(var[i] * var[j]) for i, j in off if valid[i] and valid[j]]
        out["correlation"] = np.mean(cors) if cors else None
    out["sparsity"] = (z == 0).mean()
    out["dead_units"] = (np.abs(z).max(0) == 0).mean()
    top = np.linalg.norm(c, 2)
    out["stable_rank"] = np.linalg.norm(c, "fro") ** 2 / top ** 2 if top > 0 else None
    return out


def stem(spec):
    for ch in ":,=/":
        spec = spec.replace(ch, "_")
    return spec


def main():
    d = sys.argv[1]
    z_np = load(d, "z.csv")
    y_np = load(d, "labels.csv")
    p_np = load(d, "probs.csv")
    w_np = load(d, "w.csv")
    K = int(open(os.path.join(d, "classes.txt")).read().split()[0])
    y = torch.tensor(y_np.reshape(-1).astype(np.int64)) if y_np is not None else None
    p = torch.tensor(p_np) if p_np is not None else None
    lines = []
    cases_path = os.path.join(d, "cases.txt")
    specs = [s.strip() for s in open(cases_path)] if os.path.exists(cases_path) else []
    for spec in [s for s in specs if s]:
        name, _, rest = spec.partition(":")
        opts = dict(item.split("=", 1) for item in rest.split(",") if item)
        on_weights = name in ("lsingle", "l1w", "l2w")
        x = torch.tensor(w_np if on_weights else z_np, requires_grad=True)
        z = x if not on_weights else torch.tensor(z_np)
        w = x if on_weights else (torch.tensor(w_np) if w_np is not None else None)
        v = penalty(name, opts, z, y, p, w, K)
        (g,) = torch.autograd.grad(v, x, allow_unused=True)
        g = torch.zeros_like(x) if g is None else g
        lines.append("%s %.17g" % (spec, v.item()))
        np.savetxt(os.path.join(d, "ref_grad_%s.csv" % stem(spec)), g.detach().numpy(), delimiter=",", fmt="%.17g")
    with open(os.path.join(d, "ref_values.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(d, "ref_metrics.txt"), "w") as f:
        for relu in (0, 1):
            zz = np.maximum(z_np, 0) if relu else z_np
            for k, v in metrics(zz, relu).items():
                f.write("%d %s %s\n" % (relu, k, "null" if v is None else "%.17g" % v))


if __name__ == "__main__":
    main()
