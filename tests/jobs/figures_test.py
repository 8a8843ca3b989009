#!/usr/bin/env python3
"""`repshape report` figures (issue 9) from hand-written result.json / covariance-<layer>.json
trees, every plotted value recomputed here with NumPy; eval.save_covariance end to end (the saved
matrix against result.json's metrics and NumPy's eigenvalues, 2 ranks equal to 1); the grid's data
pre-check.

    figures_test.py --bin build/runner/repshape --case figures|covariance|data_missing

Exit 0 pass, 1 fail.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np

FAILURES = []


def check(condition, message):
    if not condition:
        FAILURES.append(message)
        print("FAIL:", message, flush=True)
    return condition


def run(args, env=None, timeout=120):
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
    print(f"$ {' '.join(args)} -> {p.returncode}\n{p.stdout[-3000:]}{p.stderr[-3000:]}", flush=True)
    return p


BASE = """[data]
source = "factors"
factors = 4
input_dim = 12
samples = 200
test_samples = 100
[model]
hidden = [6]
activation = "tanh"
[train]
steps = 1
batch_size = 50
threads = 1
timings = false
[eval]
layers = ["h1"]
"""

SPEC = """[grid]
name = "figs"
base = "base.toml"
trials = 2
[report]
rows = "variant"
columns = "size"
[[axis]]
name = "variant"
values = [{ name = "a" }, { name = "b" }]
[[axis]]
name = "size"
values = [{ name = "s1" }, { name = "s2" }, { name = "s3" }]
[[report.figure]]
name = "lines"
kind = "line"
x = "size"
y = ["test.error", "layers.h1.ud@0.9"]
series = "variant"
[[report.figure]]
name = "scatter"
kind = "scatter"
x = ["layers.h1.mi_x_lower"]
y = "test.error"
label = "size"
paper_r = [0.84]
[[report.figure]]
name = "ami"
kind = "curve"
y = "layers.h1.ami@k=*"
series = "variant"
[[report.figure]]
name = "chars"
kind = "table"
rows = "variant"
metrics = ["test.error", "layers.h1.sparsity"]
paper = { a = [1.5, 0.25] }
[[report.figure]]
name = "heat"
kind = "heatmap"
layers = ["h1"]
series = "variant"
[[report.figure]]
name = "spectra"
kind = "spectrum"
layers = ["h1"]
series = "variant"
[[report.figure]]
name = "rho"
kind = "histogram"
layers = ["h1"]
series = "variant"
where = { size = ["s1", "s2"] }
"""


def panels(svg):
    """[(panel attributes, [(series, x, y, cx, cy)])] of an SVG written by Svg.cpp."""
    out = []
    for m in re.finditer(r"<g class='panel'([^>]*)>(.*?)</g>", svg, re.S):
        attrs = {k: float(v) for k, v in re.findall(r"data-(\w+)='([^']*)'", m.group(1))}
        points = [(s, float(x), float(y), float(cx), float(cy)) for s, x, y, cx, cy in re.findall(
            r"<circle class='pt' data-series='([^']*)' data-x='([^']*)' data-y='([^']*)' cx='([^']*)' cy='([^']*)'",
            m.group(2))]
        out.append((attrs, points))
    return out


def close(a, b, tol=1e-8):
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def check_pixels(name, attrs, points):
    """cx, cy are the affine images of x, y in the panel's frame (the plot is where the value is)."""
    for s, x, y, cx, cy in points:
        ex = attrs["px0"] + (x - attrs["x0"]) / (attrs["x1"] - attrs["x0"]) * attrs["pw"]
        ey = attrs["py0"] - (y - attrs["y0"]) / (attrs["y1"] - attrs["y0"]) * attrs["ph"]
        check(abs(cx - ex) < 1e-3 and abs(cy - ey) < 1e-3, f"{name}: point ({x}, {y}) drawn at ({cx}, {cy}), expected ({ex}, {ey})")


def case_figures(args, tmp):
    with open(os.path.join(tmp, "base.toml"), "w") as f:
        f.write(BASE)
    spec = os.path.join(tmp, "spec.toml")
    with open(spec, "w") as f:
        f.write(SPEC)
    results = os.path.join(tmp, "r")
    check(run([args.bin, "grid", spec, "--results", results, "--run"]).returncode == 0, "tiny grid runs")
    rng = np.random.default_rng(7)
    cells = json.load(open(os.path.join(results, "cells.json")))
    data = {}
    for c in cells:
        d = os.path.join(results, "cells", c["id"])
        width = 5
        z = rng.normal(size=(50, width)) @ rng.normal(size=(width, width))
        cov = np.cov(z, rowvar=False, bias=True)
        result = json.load(open(os.path.join(d, "result.json")))
        result["test"] = {"error": float(rng.uniform(1, 10)), "loss": 0.1, "samples": 100}
        result["layers"] = {"h1": {"ud@0.9": float(rng.integers(1, 6)), "mi_x_lower": float(rng.uniform(0, 5)),
                                   "sparsity": float(rng.uniform()), **{f"ami@k={k}": float(rng.uniform()) for k in (2, 5, 10)}}}
        with open(os.path.join(d, "result.json"), "w") as f:
            json.dump(result, f)
        for name in os.listdir(d):
            if name.startswith("covariance-"):
                os.remove(os.path.join(d, name))
        with open(os.path.join(d, "covariance-h1.json"), "w") as f:
            json.dump({"layer": "h1", "covariance": cov.tolist(),
                       "eigenvalues": sorted(np.linalg.eigvalsh(cov).tolist(), reverse=True)}, f)
        data[c["id"]] = (c["axes"], c["trial"], result, cov)
    figures = os.path.join(tmp, "figures")
    page = os.path.join(tmp, "report.html")
    p = run([args.bin, "report", results, "--format", "html", "--out", page, "--figures", figures])
    check(p.returncode == 0, "report with figures exit 0")
    html = open(page).read()
    import xml.etree.ElementTree as ElementTree
    for name in ("lines", "scatter", "ami", "heat", "spectra", "rho"):
        check(os.path.exists(os.path.join(figures, name + ".svg")), f"{name}.svg written")
        try:
            ElementTree.parse(os.path.join(figures, name + ".svg"))  # well-formed XML (what rsvg-convert needs)
        except (ElementTree.ParseError, OSError) as e:
            check(False, f"{name}.svg is not well-formed XML: {e}")
        check(f"id='figure-{name}'" in html, f"{name} in the HTML page")
    check(os.path.exists(os.path.join(figures, "chars.md")), "the table figure as chars.md")

    def cells_where(**axes):
        return [v for v in data.values() if all(v[0].get(k) == val for k, val in axes.items())]

    def metric(r, path):
        return r["test"]["error"] if path == "test.error" else r["layers"]["h1"][path.split("h1.", 1)[1]]

    # line: mean over trials per (variant, size), sizes at categorical x = 0, 1, 2.
    svg = open(os.path.join(figures, "lines.svg")).read()
    ps = panels(svg)
    check(len(ps) == 2, f"lines: one panel per y metric, got {len(ps)}")
    for (attrs, points), m in zip(ps, ["test.error", "layers.h1.ud@0.9"]):
        check_pixels("lines", attrs, points)
        check(len(points) == 6, f"lines {m}: 2 series x 3 sizes, got {len(points)}")
        for s, x, y, _, _ in points:
            expected = np.mean([metric(v[2], m) for v in cells_where(variant=s, size=f"s{int(x) + 1}")])
            check(close(y, expected), f"lines {m} {s} x={x}: {y} vs numpy {expected}")
    # scatter: a point per size (mean over its cells), Pearson r against numpy.corrcoef.
    svg = open(os.path.join(figures, "scatter.svg")).read()
    (attrs, points), = panels(svg)
    check_pixels("scatter", attrs, points)
    xs, ys = [], []
    for size in ("s1", "s2", "s3"):
        group = cells_where(size=size)
        xs.append(np.mean([v[2]["layers"]["h1"]["mi_x_lower"] for v in group]))
        ys.append(np.mean([v[2]["test"]["error"] for v in group]))
    got = sorted((x, y) for _, x, y, _, _ in points)
    check(all(close(a[0], b[0]) and close(a[1], b[1]) for a, b in zip(got, sorted(zip(xs, ys)))) and len(got) == 3,
          f"scatter points {got} vs {sorted(zip(xs, ys))}")
    r = np.corrcoef(xs, ys)[0, 1]
    md = run([args.bin, "report", results, "--format", "md"]).stdout
    m = re.search(r"layers.h1.mi_x_lower vs test.error: Pearson r = (\S+) over 3 points \(paper 0.84\)", md)
    check(m is not None and abs(float(m.group(1)) - r) < 5e-4, f"Pearson r printed {m and m.group(1)} vs numpy {r:.6f}")
    # curve: x = the k of ami@k=K, mean over the series' cells.
    (attrs, points), = panels(open(os.path.join(figures, "ami.svg")).read())
    check_pixels("ami", attrs, points)
    check(sorted({x for _, x, _, _, _ in points}) == [2, 5, 10] and len(points) == 6, f"ami x values {points}")
    for s, x, y, _, _ in points:
        expected = np.mean([v[2]["layers"]["h1"][f"ami@k={int(x)}"] for v in cells_where(variant=s)])
        check(close(y, expected), f"ami {s} k={x}: {y} vs {expected}")
    # table: mean ± std (n−1) per variant, the paper's value beside.
    for variant in ("a", "b"):
        group = [v[2] for v in cells_where(variant=variant)]
        for mname in ("test.error", "layers.h1.sparsity"):
            values = [metric(r_, mname) for r_ in group]
            text = f"{np.mean(values):.4g} ± {np.std(values, ddof=1):.4g}"
            table = re.search(r"<table class='figure'>(.*?)</table>", html, re.S).group(1)
            row = re.search(rf"<tr><td>{variant}</td>(.*?)</tr>", table).group(1)
            check(f"data-metric='{mname}'>{text}" in row, f"table {variant} {mname}: '{text}' in {row}")
    check("(paper 1.5)" in html and "(paper 0.25)" in html, "table: the paper's values beside ours")
    # heatmap: the first trial's matrix of each variant, entry by entry.
    svg = open(os.path.join(figures, "heat.svg")).read()
    maps = re.findall(r"<g class='heatmap'[^>]*>(.*?)</g>", svg, re.S)
    check(len(maps) == 2, f"heatmap: one per variant, got {len(maps)}")
    for variant, body in zip(("a", "b"), maps):
        first = min((v for v in cells_where(variant=variant)), key=lambda v: (v[0]["size"], v[1]))
        cov = first[3]
        entries = re.findall(r"data-i='(\d+)' data-j='(\d+)' data-v='([^']*)'", body)
        check(len(entries) == cov.size, f"heatmap {variant}: {len(entries)} entries")
        check(all(close(float(v), cov[int(i), int(j)]) for i, j, v in entries), f"heatmap {variant}: values = the first cell's matrix")
    # spectrum: eigenvalues (numpy, decreasing) averaged over the variant's cells.
    (attrs, points), = panels(open(os.path.join(figures, "spectra.svg")).read())
    check_pixels("spectra", attrs, points)
    for variant in ("a", "b"):
        spectra = np.array([sorted(np.linalg.eigvalsh(v[3]), reverse=True) for v in cells_where(variant=variant)])
        got = sorted((x, y) for s, x, y, _, _ in points if s == variant)
        check(len(got) == 5 and all(close(y, spectra.mean(0)[int(x) - 1], 1e-7) for x, y in got),
              f"spectrum {variant}: {got} vs {spectra.mean(0)}")
    # histogram: |ρ_ij| (i<j) pooled over the variant's cells with size s1/s2, 20 bins on [0, 1].
    (attrs, points), = panels(open(os.path.join(figures, "rho.svg")).read())
    for variant in ("a", "b"):
        rhos = []
        for v in cells_where(variant=variant):
            if v[0]["size"] == "s3":
                continue
            c = v[3]
            d = np.sqrt(np.diag(c))
            rho = np.abs(c / np.outer(d, d))
            rhos += list(rho[np.triu_indices(len(c), 1)])
        counts, _ = np.histogram(np.minimum(rhos, 1.0), bins=20, range=(0.0, 1.0))
        got = sorted((x, y) for s, x, y, _, _ in points if s.startswith(variant + " "))
        check(len(got) == 20 and all(close(y, counts[i] / len(rhos), 1e-9) for i, (_, y) in enumerate(got)),
              f"histogram {variant}: {[y for _, y in got]} vs {counts / len(rhos)}")
        check(f"mean |ρ| = {np.mean(rhos):.4g} over {len(rhos)} unit pairs" in md, f"histogram {variant}: mean |ρ| in md")


def case_covariance(args, tmp):
    config = os.path.join(tmp, "c.toml")
    with open(config, "w") as f:
        f.write(BASE.replace("steps = 1", "steps = 20").replace("[eval]", "[eval]\nsave_covariance = true\ntdv_dims = [2]"))
    outs = {}
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    for ranks in (1, 2):
        out = os.path.join(tmp, f"run{ranks}")
        launcher = [] if ranks == 1 else ["mpirun", "-np", "2", "--oversubscribe"]
        p = run(launcher + [args.bin, "train", config, "--out", out, "--quiet"], env=env)
        check(p.returncode == 0, f"train on {ranks} rank(s)")
        outs[ranks] = out
    saved = json.load(open(os.path.join(outs[1], "covariance-h1.json")))
    result = json.load(open(os.path.join(outs[1], "result.json")))["layers"]["h1"]
    c = np.array(saved["covariance"])
    check(c.shape == (6, 6) and saved["samples"] == 100 and saved["split"] == "test", f"saved {c.shape}, {saved['samples']}")
    check(np.allclose(c, c.T), "symmetric")
    eig = np.linalg.eigvalsh(c)[::-1]
    check(np.allclose(saved["eigenvalues"], eig, rtol=1e-9, atol=1e-12), "eigenvalues = numpy's, decreasing")
    # The evaluator's own metrics (MetricAccumulator, SPEC §3) from the same test set.
    off = c[~np.eye(6, dtype=bool)]
    check(close(result["covariance"], off.mean(), 1e-4), f"mean covariance {result['covariance']} vs {off.mean()}")
    check(close(result["stable_rank"], (eig ** 2).sum() / eig[0] ** 2, 1e-4), "stable rank from the saved matrix")
    diag = np.sort(np.diag(c))[::-1]
    check(close(result["tdv@2"], diag[:2].sum() / diag.sum(), 1e-4), "tdv@2 from the saved matrix")
    two = np.array(json.load(open(os.path.join(outs[2], "covariance-h1.json")))["covariance"])
    check(np.allclose(two, c, rtol=1e-5, atol=1e-9), f"2 ranks = 1 process: max diff {np.abs(two - c).max()}")
    p = run([args.bin, "train", config, "--out", outs[1], "--overwrite", "--quiet", "--set", "eval.save_covariance=false"])
    check(p.returncode == 0 and not os.path.exists(os.path.join(outs[1], "covariance-h1.json")),
          "--overwrite removes an earlier run's covariance files")


def case_data_missing(args, tmp):
    with open(os.path.join(tmp, "base.toml"), "w") as f:
        f.write(BASE)
    spec = os.path.join(tmp, "spec.toml")
    with open(spec, "w") as f:
        f.write(SPEC.replace('values = [{ name = "a" }, { name = "b" }]',
                             'values = [{ name = "a" }, { name = "b", set = { "data.source" = "cifar10", '
                             '"model.type" = "cnn", "model.layers" = ["fc:8"], "eval.layers" = ["fc1"] } }]').split("[[report.figure]]")[0])
    results = os.path.join(tmp, "r")
    env = dict(os.environ, REPSHAPE_DATA_DIR=os.path.join(tmp, "nodata"))
    p = run([args.bin, "grid", spec, "--results", results, "--run"], env=env)
    check(p.returncode == 2, f"missing CIFAR: exit 2, got {p.returncode}")
    check(p.stderr.count("\n") == 1 and "cifar10" in p.stderr and "cifar-10-binary.tar.gz" in p.stderr
          and "nothing was run or created" in p.stderr and "(cell b.s1.trial=1" in p.stderr,
          "one located line saying where to put the files")
    check(not os.path.exists(results), "nothing created")
    p = run([args.bin, "grid", spec, "--results", results, "--run", "--where", "variant=a"], env=env)
    check(p.returncode == 0, "--where variant=a does not need CIFAR")
    os.makedirs(os.path.join(tmp, "nodata", "cifar10"))
    with open(os.path.join(tmp, "nodata", "cifar10", "data_batch_1.bin"), "wb") as f:
        f.write(b"\0" * 3073)
    p = run([args.bin, "grid", spec, "--results", results, "--run"], env=env)
    check(p.returncode == 2 and "data_batch_2.bin: file not found" in p.stderr, "a missing file is named")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--case", required=True)
    args = parser.parse_args()
    args.bin = os.path.abspath(args.bin)
    tmp = tempfile.mkdtemp(prefix="repshape-figures-")
    try:
        globals()["case_" + args.case](args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if FAILURES:
        print(f"{len(FAILURES)} failure(s)")
        return 1
    print("passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
