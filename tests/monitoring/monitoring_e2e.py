#!/usr/bin/env python3
"""Issue 11 end to end: real Prometheus + Pushgateway (deploy/monitoring.sh, loopback) scrape a
real short `repshape train` on 2 ranks through the file_sd targets the ranks write.

Checks: both ranks' targets appear and are scraped; Prometheus's HTTP API returns
repshape_train_loss samples for the cell and a representation characteristic for the target layer
(evaluation during training, eval.every); `promtool check metrics` accepts a rank's page; every
metric name in the Grafana dashboard's expressions is on that page (or is repshape_grid_cells,
served by the grid scheduler and checked in test_metrics_exporter); the target files are gone
after the clean exit; the Pushgateway holds the finished cell's group (job=repshape, grid, cell)
with status ok, and a rerun of the cell replaces it instead of adding a second group.

Exit 77 (skipped) when the Prometheus binaries are missing outside CI.
"""
import argparse, signal
import glob
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

GRID, CELL, LAYER = "e2e", "reg=cr,lambda=0.01,trial=0", "h2"

CONFIG = """
[data]
source = "factors"
samples = 4000
validation_size = 500
test_samples = 1000
factors = 8
input_dim = 32

[model]
hidden = [64, 64]

[train]
steps = {steps}
batch_size = 64
log_every = 10

[eval]
every = 100

[[regularizer]]
name = "cr"
weight = 0.01
targets = ["h2"]
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def query(prom, expr):
    url = f"http://127.0.0.1:{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    answer = json.loads(get(url))
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def metric_names(page):
    names = set()
    for line in page.splitlines():
        if line and not line.startswith("#"):
            names.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    return names


def dashboard_names(path):
    dashboard = json.load(open(path))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    assert exprs, "no expressions in " + path
    return {n for e in exprs for n in re.findall(r"\brepshape_[a-z0-9_]+\b", e)}


def wait_for(what, predicate, timeout, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def pushed_groups(push):
    groups = json.loads(get(f"http://127.0.0.1:{push}/api/v1/metrics"))["data"]
    return [g for g in groups if g["labels"].get("job") == "repshape" and g["labels"].get("cell") == CELL]


def pushed_status(group):
    for sample in group.get("repshape_run_status", {}).get("metrics", []):
        if sample["value"] == "1" or float(sample["value"]) == 1.0:
            return sample["labels"]["status"]
    return None


def train(args, results, push, steps, out):
    cfg = os.path.join(results, "e2e.toml")
    with open(cfg, "w") as f:
        f.write(CONFIG.format(steps=steps))
    command = ["mpirun", "--oversubscribe", "-np", "2", args.bin, "train", cfg, "--out", out, "--overwrite",
               "--metrics-listen", "127.0.0.1:0",
               "--set", f"metrics.targets_dir={results}/targets", "--set", f"metrics.pushgateway=127.0.0.1:{push}",
               "--set", f"metrics.grid={GRID}", "--set", f"metrics.cell={CELL}"]
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--deploy", required=True)
    parser.add_argument("--steps", type=int, default=1000000)
    args = parser.parse_args()
    missing = [t for t in ("prometheus", "prometheus-pushgateway", "promtool", "mpirun") if not shutil.which(t)]
    if missing:
        if os.environ.get("CI"):
            sys.exit(f"missing in CI: {missing} (deploy/install-deps.sh installs them)")
        print(f"SKIP: {missing} not installed (deploy/install-deps.sh)")
        sys.exit(77)

    results = tempfile.mkdtemp(prefix="repshape-monitoring-e2e-")
    prom, push = free_port(), free_port()
    env = dict(os.environ, PROMETHEUS_PORT=str(prom), PUSHGATEWAY_PORT=str(push), SCRAPE_INTERVAL="1s")
    monitoring = os.path.join(args.deploy, "monitoring.sh")
    subprocess.run([monitoring, "start", results], env=env, check=True, timeout=60)
    run = None
    try:
        out = os.path.join(results, "cells", "c0")
        run = train(args, results, push, args.steps, out)
        # Both ranks write their target file once serving; Prometheus picks them up (inotify).
        targets = wait_for("two target files",
                           lambda: sorted(glob.glob(f"{results}/targets/*-rank*.json")) if len(
                               glob.glob(f"{results}/targets/*-rank*.json")) == 2 else None, 30, run)
        labels = [json.load(open(t))[0]["labels"] for t in targets]
        assert sorted(l["rank"] for l in labels) == ["0", "1"], labels
        assert all(l["cell"] == CELL and l["grid"] == GRID for l in labels), labels
        address = json.load(open(targets[0]))[0]["targets"][0]

        # A rank's own page: valid exposition, and it carries every name the dashboard uses.
        page = wait_for("a page with a layer characteristic",
                        lambda: (lambda p: p if f'repshape_layer_mapc{{' in p else None)(get(f"http://{address}/metrics")),
                        60, run)
        lint = subprocess.run(["promtool", "check", "metrics"], input=page, text=True, capture_output=True)
        assert lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(), lint.stdout + lint.stderr
        wanted = dashboard_names(os.path.join(args.deploy, "grafana", "dashboards", "repshape.json"))
        absent = sorted(n for n in wanted - metric_names(page) if not n.startswith("repshape_grid_"))
        assert not absent, f"dashboard metrics not on a training page: {absent}"

        # Prometheus scraped the cell through the file_sd config: the loss and a characteristic.
        loss = wait_for("repshape_train_loss of both ranks in Prometheus",
                        lambda: (lambda r: r if len(r) == 2 else None)(
                            query(prom, f'last_over_time(repshape_train_loss{{cell="{CELL}"}}[10m])')), 60)
        ranks = sorted(s["metric"]["rank"] for s in loss)
        assert ranks == ["0", "1"], loss
        assert all(s["metric"]["grid"] == GRID and s["metric"]["job"] == "repshape" for s in loss), loss
        # From a rank's own endpoint (an evaluation during training), not only the pushed outcome.
        addresses = "|".join(json.load(open(t))[0]["targets"][0] for t in targets)
        mapc = wait_for("a characteristic of the target layer",
                        lambda: query(prom, f'last_over_time(repshape_layer_mapc{{cell="{CELL}",layer="{LAYER}",'
                                            f'instance=~"{addresses}"}}[10m])'), 60)
        value = float(mapc[0]["value"][1])
        assert 0.0 <= value <= 1.0, mapc

        # The training runs until the checks above passed, however loaded the machine (Prometheus
        # applies new file_sd targets at most every 5 s): then Ctrl-C, which mpirun turns into
        # SIGTERM for the ranks, stops it at a step boundary — a clean, recorded ending.
        run.send_signal(signal.SIGINT)
        output, _ = run.communicate(timeout=90)
        assert not glob.glob(f"{results}/targets/*-rank*.json"), "target files left after a clean exit"
        result = json.load(open(os.path.join(out, "result.json")))
        assert result["status"] == "interrupted", result

        groups = wait_for("the cell's pushed group", lambda: pushed_groups(push), 10)
        assert len(groups) == 1 and pushed_status(groups[0]) == "interrupted", groups
        first_push = groups[0]["push_time_seconds"]["metrics"][0]["value"]

        # A rerun of the same cell replaces the group: still one group, with a newer push time.
        run = train(args, results, push, 20, out)
        output, _ = run.communicate(timeout=90)
        assert run.returncode == 0, output
        groups = pushed_groups(push)
        assert len(groups) == 1 and pushed_status(groups[0]) == "ok", groups
        pushed_layers = groups[0].get("repshape_layer_mapc", {}).get("metrics", [])
        assert any(m["labels"].get("layer") == LAYER for m in pushed_layers), groups[0].keys()
        assert float(groups[0]["push_time_seconds"]["metrics"][0]["value"]) > float(first_push), groups
        print(f"monitoring e2e: 2 ranks scraped, loss {loss[0]['value'][1]}, mapc@{LAYER} {value:.4f}, "
              f"{len(wanted)} dashboard metrics on the page, pushed group interrupted, then ok and replaced on rerun")
    except BaseException:
        if run is not None and run.poll() is not None and run.stdout:
            print("repshape train output:\n" + run.stdout.read(), file=sys.stderr)
        raise
    finally:
        if run is not None and run.poll() is None:
            run.kill()
        subprocess.run([monitoring, "stop", results], env=env, timeout=60)
        shutil.rmtree(results, ignore_errors=True)


if __name__ == "__main__":
    main()
