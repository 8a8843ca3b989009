#!/usr/bin/env python3
"""End-to-end tests of `repshape grid` and `repshape report` (issue 8), real processes only.

    grid_test.py --bin build/runner/repshape --source . --case NAME

Cells train a small MLP on the synthetic `factors` data (1 200 samples, 30 steps) so a cell takes
about a second; every value the test checks is recomputed here from the cells' result.json files.
Exit 0 pass, 1 fail, 77 skipped (no chromium for the screenshot case).
"""
import argparse
import csv
import io
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data"))
from write_formats import write_cifar, write_strokes  # noqa: E402  (issue 9 data formats)

BASE = """[data]
source = "factors"
factors = 4
input_dim = 20
samples = 1200
test_samples = 400
[model]
hidden = [32, 32]
[optim]
lr = 0.01
[train]
steps = {steps}
batch_size = 50
timings = false
threads = 1
[[regularizer]]
name = "cr"
weight = 0.1
targets = ["h2"]
"""

# 2 baseline cells + 2 phase-1 (cr, lambda) + 2 phase-2 cells = 6 cells.
SPEC = """[grid]
name = "tiny"
base = "base.toml"
trials = 2
set = {{ "data.samples" = 1200 }}
[select]
axis = "lambda"
search = {{ "data.validation_size" = 300 }}
[report]
rows = "regularizer"
columns = "condition"
[report.paper]
cr = {{ small = [12.5, 0.5] }}
[[axis]]
name = "regularizer"
values = [
  {{ name = "baseline", set = {{ regularizer = [] }}, skip = ["lambda"] }},
  {{ name = "cr" }},
]
[[axis]]
name = "condition"
values = [{{ name = "small" }}]
[[axis]]
name = "lambda"
key = "regularizer.0.weight"
values = [{lambdas}]
"""

FAILURES = []


def check(condition, message):
    if not condition:
        FAILURES.append(message)
        print("FAIL:", message, flush=True)
    return condition


class Env:
    def __init__(self, args):
        self.bin = os.path.abspath(args.bin)
        self.source = os.path.abspath(args.source)
        self.dir = tempfile.mkdtemp(prefix="repshape-grid-test-")
        self.env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")

    def spec(self, name="spec.toml", steps=30, lambdas="0.01, 0.1", text=None):
        with open(os.path.join(self.dir, "base.toml"), "w") as f:
            f.write(BASE.format(steps=steps))
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text if text is not None else SPEC.format(lambdas=lambdas))
        return path

    def grid(self, *args, timeout=150):
        p = subprocess.run([self.bin, "grid", *args], capture_output=True, text=True, timeout=timeout, env=self.env)
        print(f"$ repshape grid {' '.join(args)}  -> {p.returncode}\n{p.stdout}{p.stderr}", flush=True)
        return p

    def report(self, results, fmt="md"):
        p = subprocess.run([self.bin, "report", results, "--format", fmt], capture_output=True, text=True,
                           timeout=60, env=self.env)
        check(p.returncode == 0, f"report --format {fmt}: exit {p.returncode}: {p.stderr}")
        return p.stdout

    def start(self, *args):
        log = open(os.path.join(self.dir, f"runner-{time.time_ns()}.log"), "w+")
        return subprocess.Popen([self.bin, "grid", *args], stdout=log, stderr=subprocess.STDOUT, env=self.env), log


def cells_of(results):
    with open(os.path.join(results, "cells.json")) as f:
        return json.load(f)


def result_of(results, cell_id):
    try:
        with open(os.path.join(results, "cells", cell_id, "result.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def finished(results):
    if not os.path.exists(os.path.join(results, "cells.json")):
        return []
    out = []
    for c in cells_of(results):
        r = result_of(results, c["id"])
        if r and r.get("status") in ("ok", "diverged", "failed"):
            out.append(c["id"])
    return out


def recorded(results):
    """Finished cells whose result.json the runner completed with the cell's identity."""
    return [i for i in finished(results) if "cell" in result_of(results, i)]


def running_cells(results):
    ids = []
    for pid in processes_mentioning(results + "/cells/"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().decode().split("\0")
        except OSError:
            continue
        if "--out" in args:
            ids.append(os.path.basename(args[args.index("--out") + 1]))
    return ids


def processes_mentioning(text):
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    pids.append(int(pid))
        except OSError:
            pass
    return pids


def wait_for(predicate, seconds, what):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    check(False, f"timed out after {seconds}s waiting for {what}")
    return False


def file_bytes(results, ids):
    out = {}
    for i in ids:
        for name in ("result.json", "steps.jsonl", "config.resolved.toml"):
            with open(os.path.join(results, "cells", i, name), "rb") as f:
                out[(i, name)] = f.read()
    return out


def expected_table(results, metric="test.error"):
    """(row, column) -> (mean, sample std, n) from the phase-2/plain cells' result.json."""
    groups = {}
    for c in cells_of(results):
        if c["phase"] == "search":
            continue
        r = result_of(results, c["id"])
        key = (c["axes"]["regularizer"], c["axes"].get("condition", "all"))
        groups.setdefault(key, [])
        if r and r.get("status") == "ok":
            groups[key].append(r["test"]["error"])
    return {k: (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0, len(v)) for k, v in groups.items() if v}


# ---- cases ----------------------------------------------------------------------------------------

def case_expansion_cli(env):
    spec = env.spec(lambdas="0.01, 0.1, 1.0")
    results = os.path.join(env.dir, "r")
    p = env.grid(spec, "--results", results, "--list")
    check(p.returncode == 0, "--list exit 0")
    lines = [l for l in p.stdout.splitlines() if not l.startswith("#")]
    ids = [l.split()[1] for l in lines]
    check(len(ids) == 2 + 3 + 2, f"7 cells listed, got {len(ids)}")
    check(ids[:2] == ["baseline.small.trial=1", "baseline.small.trial=2"], f"baseline ids first: {ids[:2]}")
    check("cr.small.lambda=0.1.trial=1" in ids and "cr.small.phase=final.trial=2" in ids, f"ids: {ids}")
    check(all(l.split()[0] == "pending" for l in lines if "final" not in l), "pending before any run")
    check(all(l.split()[0] == "waiting" for l in lines if "final" in l), "phase-2 cells wait for phase 1")
    check(not os.path.exists(results), "--list creates nothing")
    p = env.grid(spec, "--results", results, "--list", "--where", "regularizer=cr")
    listed = [l.split()[1] for l in p.stdout.splitlines() if not l.startswith("#")]
    check(p.returncode == 0 and listed == [i for i in ids if i.startswith("cr.")] and len(listed) == 5,
          f"--list honours --where: {listed}")
    check("# 5 of 7 cells (--where):" in p.stdout, "the --where summary counts the listed cells")


def case_bad_spec(env):
    env.spec()
    results = os.path.join(env.dir, "r")
    good = SPEC.format(lambdas="0.01")
    cases = [
        # (spec text, expected fragment with the spec line)
        (good.replace('{ name = "cr" },', '{ name = "cr", set = { "model.hiden" = [8] } },'),
         ":18: model.hiden: unknown key (did you mean 'hidden'?)"),
        (good.replace('{ name = "cr" },', '{ name = "cr", set = { "train.steps" = "many" } },'),
         ":18: train.steps: expected an integer, got a string"),
        (good.replace("trials = 2", "trials = 2\ntrails = 3"), ":5: grid.trails: unknown key (did you mean 'trials'?)"),
        (good.replace('values = [{ name = "small" }]', "values = []"), ":22: axis 'condition'.values: empty axis"),
        (good.replace('name = "condition"', 'name = "regularizer"'), "duplicate axis name 'regularizer'"),
        (good.replace('key = "regularizer.0.weight"', 'key = "regularizer.0.wieght"'),
         ":26: regularizer[0].wieght: unknown key (did you mean 'weight'?)"),
    ]
    for i, (text, fragment) in enumerate(cases):
        spec = env.spec(name=f"bad{i}.toml", text=text)
        p = env.grid(spec, "--results", results, "--run")
        check(p.returncode == 2, f"bad spec {i}: exit 2, got {p.returncode}")
        located = spec + fragment if fragment.startswith(":") else fragment
        check(located in p.stderr, f"bad spec {i}: stderr lacks '{located}'")
        check(not os.path.exists(results), f"bad spec {i}: {results} was created")
    spec = env.spec()
    p = env.grid(spec, "--results", results, "--run", "--set", "train.stepz=3")
    check(p.returncode == 2 and "--set: train.stepz: unknown key (did you mean 'steps'?)" in p.stderr,
          "a bad --set is located at --set")
    check(not os.path.exists(results), "bad --set creates nothing")
    p = env.grid(spec, "--results", results, "--run", "--where", "regularizer=cr,nope")
    check(p.returncode == 2 and "axis 'regularizer' has no value 'nope'" in p.stderr, "a bad --where is refused")
    check(not os.path.exists(results), "bad --where creates nothing")


def interrupted_run(env, how, ranks):
    spec = env.spec(steps=80, lambdas="0.01")  # 2 baseline + 1 phase-1 + 2 phase-2 cells
    reference = os.path.join(env.dir, "reference")
    results = os.path.join(env.dir, "r")
    common = ["--ranks-per-cell", str(ranks), "--set", "train.threads=1"]
    p = env.grid(spec, "--results", reference, "--run", *common)
    check(p.returncode == 0, "uninterrupted run exit 0")
    runner, log = env.start(spec, "--results", results, "--run", *common)
    wait_for(lambda: len(recorded(results)) >= 2, 120, "two finished cells")
    # Stop the runner while a later cell trains (a zombie of a finished one has no cmdline).
    check(wait_for(lambda: set(running_cells(results)) - set(finished(results)), 30, "a running cell"),
          "a cell process runs when the runner is stopped")
    runner.send_signal(signal.SIGKILL if how == "kill9" else signal.SIGINT)
    rc = runner.wait(timeout=60)
    log.seek(0)
    print(log.read())
    check(rc == (-9 if how == "kill9" else 130), f"runner exit after {how}: {rc}")
    check(wait_for(lambda: not processes_mentioning(results + "/cells/"), 15, "cell processes to end"),
          f"cell processes outlived the runner ({how})")
    # Finished: result.json with a final status. The runner adds the cell's identity to it after the
    # child exits; a cell whose child finished just before a kill -9 gets it on resume (`recorded`
    # cells are byte-identical, the others keep their steps.jsonl and resolved config).
    done = finished(results)
    before = file_bytes(results, done)
    whole = recorded(results)
    if how == "sigint":
        states = [(c["id"], (result_of(results, c["id"]) or {}).get("status")) for c in cells_of(results)]
        check(any(s == "interrupted" for _, s in states), f"the running cell is marked interrupted: {states}")
    p = env.grid(spec, "--results", results, "--list")
    check(p.returncode == 0, "--list after the stop")
    p = env.grid(spec, "--results", results, "--run", *common)
    check(p.returncode == 0, "resumed run exit 0")
    if how == "kill9":
        check("stale lock" in p.stderr, "the stale lock of the killed runner is reported")
    after = file_bytes(results, done)
    for key, content in before.items():
        if key[0] in whole or key[1] != "result.json":
            check(after[key] == content, f"{key} byte-identical after the resume")
        else:
            a, b = json.loads(content), json.loads(after[key])
            b.pop("cell")
            check(a == b, f"{key}: only the cell's identity was added")
    ran = [l.split()[4] for l in p.stdout.splitlines() if l.startswith("[grid tiny]") and "/" in l.split()[2]]
    check(ran and not set(ran) & set(done), f"no finished cell ran again: ran {ran}, finished before {done}")
    for c in cells_of(results):
        r = result_of(results, c["id"])
        check(r is not None and r["status"] == "ok", f"{c['id']} ended ok: {r and r.get('status')}")
        with open(os.path.join(results, "cells", c["id"], "steps.jsonl"), "rb") as f, \
                open(os.path.join(reference, "cells", c["id"], "steps.jsonl"), "rb") as g:
            check(f.read() == g.read(), f"{c['id']}: steps.jsonl equals the uninterrupted run's (one complete run)")
    check(env.report(results) == env.report(reference), "final table identical to the uninterrupted run")


def case_resume_kill9(env):
    interrupted_run(env, "kill9", ranks=2)


def case_resume_sigint(env):
    interrupted_run(env, "sigint", ranks=1)


def case_diverged_and_crash(env):
    spec = env.spec(lambdas="0.01, 1e30, 0.1")
    results = os.path.join(env.dir, "r")
    p = env.grid(spec, "--results", results, "--run", "--fault-cell", "baseline.small.trial=2:rank=0,step=3,kind=crash")
    check(p.returncode == 0, "the grid completes around a diverged and a crashed cell")
    diverged = result_of(results, "cr.small.lambda=1e+30.trial=1")
    check(diverged is not None and diverged["status"] == "diverged", f"lambda=1e30 is diverged: {diverged}")
    crashed = result_of(results, "baseline.small.trial=2")
    check(crashed is not None and crashed["status"] == "failed" and crashed.get("reason"),
          f"the crashed cell is failed with a reason: {crashed}")
    with open(os.path.join(results, "selection.json")) as f:
        selection = json.load(f)
    entry = selection["cr.small"]
    errors = {c["value"]: result_of(results, c["cell"])["validation"]["error"] for c in entry["candidates"]
              if c["value"] != "1e+30"}
    best = min(errors, key=lambda v: (errors[v], ["0.01", "0.1"].index(v)))
    check(entry["selected"] == best, f"selected {entry['selected']}, lowest validation error {best} {errors}")
    for t in (1, 2):
        r = result_of(results, f"cr.small.phase=final.trial={t}")
        check(r is not None and r["cell"]["selected"] == best and r["status"] == "ok",
              f"phase-2 trial {t} ran with the selected lambda: {r and r.get('cell')}")
        check(r is not None and r.get("validation") is None, "phase 2 trains on the full training set (no validation split)")
    md = env.report(results)
    check("1/2, 1 failed" in md, f"report counts the failed trial:\n{md}")


def case_concurrent(env):
    spec = env.spec(steps=300)
    results = os.path.join(env.dir, "r")
    first, log = env.start(spec, "--results", results, "--run")
    wait_for(lambda: processes_mentioning(results + "/cells/"), 60, "the first runner's cell")
    p = env.grid(spec, "--results", results, "--run")
    check(p.returncode == 2 and "another grid runner" in p.stderr and f"pid {first.pid}" in p.stderr,
          "a second runner is refused, naming the first")
    p = env.grid(spec, "--results", results, "--list")
    check(any(l.startswith("running") for l in p.stdout.splitlines()), "--list shows the running cell")
    first.send_signal(signal.SIGKILL)
    first.wait()
    wait_for(lambda: not processes_mentioning(results + "/cells/"), 15, "the killed runner's cells to end")
    p = env.grid(spec, "--results", results, "--run", "--limit-cells", "1")
    check(p.returncode == 0 and "stale lock" in p.stderr and f"pid {first.pid}" in p.stderr,
          "a dead runner's lock is taken over with a message")


def case_changed_spec(env):
    spec = env.spec()
    results = os.path.join(env.dir, "r")
    check(env.grid(spec, "--results", results, "--run").returncode == 0, "first run")
    before = file_bytes(results, finished(results))
    p = env.grid(spec, "--results", results, "--run")
    check(p.returncode == 0 and "not finished 0" in p.stdout, "a rerun of a finished grid does nothing")
    check(file_bytes(results, finished(results)) == before, "and changes no cell")
    changed = env.spec(steps=31)
    p = env.grid(changed, "--results", results, "--run")
    check(p.returncode == 2 and "different config" in p.stderr, "a changed base config is refused")
    p = env.grid(spec, "--results", results, "--run", "--set", "optim.lr=0.02")
    check(p.returncode == 2 and "different config" in p.stderr, "a changed --set is refused")
    grown = env.spec(lambdas="0.01, 0.1, 0.5")
    p = env.grid(grown, "--results", results, "--list")
    p = env.grid(grown, "--results", results, "--run")
    check(p.returncode == 0, "a spec that keeps every finished cell identical is accepted")
    with open(os.path.join(results, "selection.json")) as f:
        chosen = json.load(f)["cr.small"]["selected"]
    for t in (1, 2):
        r = result_of(results, f"cr.small.phase=final.trial={t}")
        check(r["cell"]["selected"] == chosen, f"phase-2 trial {t} ran with the current choice {chosen}")
    after = file_bytes(results, finished(results))
    unchanged = {k: v for k, v in before.items() if "phase=final" not in k[0]}
    check(all(after.get(k) == v for k, v in unchanged.items()), "kept phase-1 and baseline cells untouched")


def case_report(env):
    spec = env.spec(lambdas="0.01, 0.1")
    results = os.path.join(env.dir, "r")
    # Run the phase-1 cells only: the phase-2 cells then show the selected value.
    p = env.grid(spec, "--results", results, "--run", "--limit-cells", "4")
    check(p.returncode == 0, "partial run exit 0")
    p = env.grid(spec, "--results", results, "--list")
    finals = [l for l in p.stdout.splitlines() if "phase=final" in l]
    check(len(finals) == 2 and all(l.startswith("pending") and "selected" in l for l in finals),
          f"finals pending with a selection: {finals}")
    partial = env.report(results)
    print(partial)
    check("missing" in partial, "a partial grid's report counts missing cells")
    check("cr.phase=final" not in partial, "ids are not rows")
    check(env.grid(spec, "--results", results, "--run").returncode == 0, "complete the grid")
    md = env.report(results)
    print(md)
    table = expected_table(results)
    best_mean, best_std, _ = min(table.values())
    for (row, column), (mean, std, n) in table.items():
        text = f"{mean:.2f} ± {std:.2f}"
        line = next((l for l in md.splitlines() if l.startswith(f"| {row} |")), "")
        check(text in line, f"md row {row} shows {text}: {line}")
        if mean == best_mean:
            check(f"**{text}**" in line, f"best entry bold: {line}")
        else:
            overlap = mean - std <= best_mean + best_std and mean + std >= best_mean - best_std
            check(("†" in line) == overlap, f"overlap mark {overlap} expected: {line}")
    check("(paper 12.50 ± 0.50)" in md, "the paper's number beside ours")
    rows = list(csv.DictReader(io.StringIO(env.report(results, "csv"))))
    check(len(rows) == len(cells_of(results)), "csv: one row per cell")
    for row in rows:
        r = result_of(results, row["cell"])
        check(abs(float(row["test_error"]) - r["test"]["error"]) < 1e-9, f"csv test_error of {row['cell']}")
        check(row["status"] == r["status"], f"csv status of {row['cell']}")
    tex = env.report(results, "tex")
    check("\\begin{tabular}" in tex and "\\textbf{" in tex, "tex table with a bold best entry")
    html = env.report(results, "html")
    check("<svg" in html and "<table" in html and "http://" not in html.replace("http://www.w3.org/2000/svg", ""),
          "html: table and inline SVG, no external resources")


def case_report_html(env):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("SKIP: chromium not installed")
        return 77
    spec = env.spec(lambdas="0.01, 0.1")
    results = os.path.join(env.dir, "r")
    check(env.grid(spec, "--results", results, "--run", "--limit-cells", "2").returncode == 0, "grid (2 cells)")
    page = os.path.join(env.dir, "report.html")
    subprocess.run([env.bin, "report", results, "--format", "html", "--out", page], check=True, timeout=60)
    blank = os.path.join(env.dir, "blank.html")
    with open(blank, "w") as f:
        f.write("<!DOCTYPE html><html><body></body></html>")
    sizes = {}
    for name, path in (("report", page), ("blank", blank)):
        png = os.path.join(env.dir, name + ".png")
        p = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                            f"--screenshot={png}", "--window-size=900,700", "file://" + path],
                           capture_output=True, text=True, timeout=90)
        check(os.path.exists(png), f"chromium wrote {png}: {p.stderr[-500:]}")
        sizes[name] = os.path.getsize(png) if os.path.exists(png) else 0
        if os.path.exists(png):
            with open(png, "rb") as f:
                check(f.read(8) == b"\x89PNG\r\n\x1a\n", f"{png} is a PNG")
    print("screenshot bytes:", sizes)
    check(sizes["report"] > 5 * max(sizes["blank"], 1) and sizes["report"] > 10000,
          f"the report screenshot shows content ({sizes})")
    keep = os.environ.get("REPSHAPE_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(os.path.join(env.dir, "report.png"), keep)


def case_metrics(env):
    """--metrics: cells get metrics.grid/cell/targets_dir/listen; the runner serves the cell counts."""
    import urllib.request
    spec = env.spec(steps=200, lambdas="0.01")
    results = os.path.join(env.dir, "r")
    runner, log = env.start(spec, "--results", results, "--run", "--metrics", "--limit-cells", "2")
    target = os.path.join(results, "targets", "tiny-grid.json")
    wait_for(lambda: os.path.exists(target) and running_cells(results), 60, "the grid's metrics target")
    with open(target) as f:
        address = json.load(f)[0]["targets"][0]
    text = urllib.request.urlopen(f"http://{address}/metrics", timeout=10).read().decode()
    print(text)
    counts = {}
    for line in text.splitlines():
        if line.startswith('repshape_grid_cells{grid="tiny",state="'):
            counts[line.split('state="')[1].split('"')[0]] = float(line.split()[-1])
    check(counts.get("running") == 1, f"the running cell is counted: {counts}")
    check(sum(counts.values()) == 5 and counts.get("pending", 0) >= 3, f"all 5 cells counted: {counts}")
    check(runner.wait(timeout=120) == 0, "grid with --metrics exit 0")
    with open(os.path.join(results, "cells", "baseline.small.trial=1", "config.resolved.toml")) as f:
        resolved = f.read()
    for line in ("cell = 'baseline.small.trial=1'", "grid = 'tiny'", "listen = '127.0.0.1:0'",
                 f"targets_dir = '{os.path.join(results, 'targets')}'"):
        check(line in resolved, f"the cell's config has {line}")


def fake_cifar(root, which, records):
    """Tiny files in the exact CIFAR binary formats (label byte(s) + 3072 pixel bytes per record)."""
    import random
    rng = random.Random(5)
    folder = os.path.join(root, which)
    os.makedirs(folder, exist_ok=True)
    names = ([f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"] if which == "cifar10"
             else ["train.bin", "test.bin"])
    for name in names:
        with open(os.path.join(folder, name), "wb") as f:
            for i in range(records):
                label = bytes([i % 10]) if which == "cifar10" else bytes([i % 20, i % 100])
                f.write(label + bytes(rng.randrange(256) for _ in range(3072)))


def case_smoke_specs(env):
    """The first cell of every shipped spec, tiny. Specs on data this machine lacks must say where
    to put it (one line, exit 2, nothing created) and, for CIFAR, run on tiny files in its format."""
    specs_dir = os.path.join(env.source, "jobs", "specs")
    mnist = os.path.join(os.environ.get("REPSHAPE_DATA_DIR", os.path.expanduser("~/.local/share/repshape")), "mnist")
    for name in sorted(os.listdir(specs_dir)):
        if not name.endswith(".toml"):
            continue
        spec = os.path.join(specs_dir, name)
        results = os.path.join(env.dir, name)
        p = env.grid(spec, "--results", results, "--list")
        check(p.returncode == 0, f"{name}: --list")
        first = p.stdout.splitlines()[0].split()[1]
        extra = ["--set", "train.steps=3"]  # a whole test set: synthetic sources have only a few hundred
        # Without any data directory: file sources must refuse with where to put the files.
        nodata = os.path.join(env.dir, "nodata-" + name)
        os.makedirs(nodata)
        saved = env.env
        env.env = dict(saved, REPSHAPE_DATA_DIR=nodata)
        p = env.grid(spec, "--results", results, "--cell", first, *extra)
        env.env = saved
        if p.returncode == 2:
            message = p.stderr.strip()
            check(("not found" in message) and "\n" not in message and "nothing was run or created" in message
                  and ("set data.dir" in message or "REPSHAPE_DATA_DIR" in message),
                  f"{name}: one located line saying where the data goes: {message}")
            check(not os.path.exists(results), f"{name}: a missing data set creates nothing")
            source = next((s for s in ("cifar100", "cifar10") if f'data.source = "{s}"' in message), None)
            if source:
                fake_cifar(nodata, source, 20 if source == "cifar10" else 100)
                env.env = dict(saved, REPSHAPE_DATA_DIR=nodata)
                p = env.grid(spec, "--results", results, "--cell", first, *extra, "--set", "data.validation_size=10")
                env.env = saved
                r = result_of(results, first)
                check(p.returncode == 0 and r is not None and r["status"] == "ok", f"{name}: first cell {first} ok on tiny {source} files")
                continue
            if "mnist" not in message:
                print(f"{name}: data not on this machine; the refusal above is the smoke test")
                continue
        elif p.returncode == 0:
            r = result_of(results, first)
            check(r is not None and r["status"] == "ok", f"{name}: first cell {first} ok")
            continue
        with open(spec) as f:
            if '"../choi-mnist-mlp.toml"' in f.read() and not os.path.exists(os.path.join(mnist, "train-images-idx3-ubyte.gz")):
                print(f"{name}: real-MNIST subset not imported (deploy/import-mnist.sh); smoke-running on fashion-mnist")
                extra += ["--set", "data.source=fashion-mnist"]
        with open(spec) as f:
            base = re.search(r'^base = "(.*)"', f.read(), re.M)
        with open(os.path.join(specs_dir, base.group(1))) if base else io.StringIO() as f:
            file_source = re.search(r'^source = "(cifar10|strokes)"', f.read(), re.M)
        if file_source:  # never the user's own files (a whole CIFAR through VGG would outlast the test)
            saved = env.env
            env.env = dict(env.env, REPSHAPE_DATA_DIR=os.path.join(env.dir, "no-data"))
        p = env.grid(spec, "--results", results, "--cell", first, *extra)
        if file_source:
            env.env = saved
        missing = re.search(r'directory not found \(data.source = "(cifar10|strokes)"\)', p.stderr)
        check(bool(missing) == bool(file_source), f"{name}: data-missing message iff the data is CIFAR or strokes")
        if missing:
            # Data not on this machine (CIFAR, pen strokes): the cell stops before any work saying
            # where the files go; then the model runs on small files in the exact format.
            check(p.returncode == 2 and "there, or set data.dir" in p.stderr and not os.path.exists(results),
                  f"{name}: missing {missing.group(1)} data: exit 2 with where to put the files, nothing created")
            data_root = os.path.join(env.dir, "data")
            writer = write_cifar if missing.group(1) == "cifar10" else write_strokes
            writer(os.path.join(data_root, missing.group(1)), random.Random(1),
                   **({"train_counts": (20,) * 5, "test_count": 40} if writer is write_cifar else {"train_count": 100, "test_count": 40}))
            saved = env.env
            env.env = dict(env.env, REPSHAPE_DATA_DIR=data_root)
            p = env.grid(spec, "--results", results, "--cell", first, *extra, "--set", "data.validation_size=10",
                         "--set", "train.batch_size=16", timeout=300)
            env.env = saved
        r = result_of(results, first)
        check(p.returncode == 0 and r is not None and r["status"] == "ok", f"{name}: first cell {first} ok")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--case", required=True)
    args = parser.parse_args()
    env = Env(args)
    try:
        code = globals()["case_" + args.case](env)
    finally:
        for pid in processes_mentioning(env.dir):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(env.dir, ignore_errors=True)
    if code == 77:
        return 77
    if FAILURES:
        print(f"{len(FAILURES)} failure(s)")
        return 1
    print("passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
