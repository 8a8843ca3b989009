#!/usr/bin/env python3
"""Issue 11, bad input through the real `repshape train`: a taken or malformed listen address and
an unwritable targets directory stop the run before any work (exit 2, the run directory never
created, a message naming the address or the config line); an unreachable Pushgateway costs one
warning and the run finishes ok; the target file is gone after the clean exit."""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile

CONFIG = """[data]
source = "factors"
samples = 300
test_samples = 100

[model]
hidden = [8]

[train]
steps = 5
batch_size = 50
{extra}"""


def run(binary, config, out, *flags):
    p = subprocess.run([binary, "train", config, "--out", out, "-q", *flags], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout + p.stderr


def expect(condition, message, output=""):
    if not condition:
        sys.exit(f"FAIL: {message}\n--- output ---\n{output}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    binary = parser.parse_args().bin
    tmp = tempfile.mkdtemp(prefix="repshape-metrics-cli-")
    try:
        config = os.path.join(tmp, "c.toml")
        with open(config, "w") as f:
            f.write(CONFIG.format(extra=""))
        out = os.path.join(tmp, "run")

        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        address = "127.0.0.1:%d" % taken.getsockname()[1]
        code, output = run(binary, config, out, "--metrics-listen", address)
        expect(code == 2, f"a taken port: exit {code}, expected 2", output)
        expect(address in output and "Address already in use" in output, "the message names the address", output)
        expect(not os.path.exists(out), "the run directory was created for a run that never started", output)
        taken.close()

        code, output = run(binary, config, out, "--set", "metrics.listen=localhost:1")
        expect(code == 2 and f"{config}: --set: metrics.listen: host must be an IPv4" in output, "malformed --set", output)
        code, output = run(binary, config, out, "--metrics-listen", "127.0.0.1:70000")
        expect(code == 2 and "--metrics-listen: port must be 0..65535" in output, "malformed --metrics-listen", output)
        located = os.path.join(tmp, "located.toml")
        with open(located, "w") as f:
            f.write(CONFIG.format(extra='\n[metrics]\nlisten = "1.2.3:80"\n'))
        code, output = run(binary, located, out)
        expect(code == 2 and f"{located}:14: metrics.listen: host must be" in output, "located malformed listen", output)
        expect(not os.path.exists(out), "the run directory exists after bad input", output)

        plain = os.path.join(tmp, "plain")
        open(plain, "w").close()
        code, output = run(binary, config, out, "--metrics-listen", "127.0.0.1:0",
                           "--set", f"metrics.targets_dir={plain}/targets")
        expect(code == 2 and "metrics.targets_dir: cannot write the Prometheus target file" in output,
               "an unwritable targets directory", output)
        expect(not os.path.exists(out), "the run directory exists after an unwritable targets dir", output)

        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            dead = "127.0.0.1:%d" % s.getsockname()[1]
        targets = os.path.join(tmp, "targets")
        code, output = run(binary, config, out, "--metrics-listen", "127.0.0.1:0",
                           "--set", f"metrics.targets_dir={targets}", "--set", f"metrics.pushgateway={dead}")
        expect(code == 0, f"an unreachable pushgateway stopped the run (exit {code})", output)
        expect(output.count("warning: cannot push metrics") == 1 and dead in output, "exactly one warning", output)
        expect(json.load(open(os.path.join(out, "result.json")))["status"] == "ok", "result.json status ok", output)
        expect(os.path.isdir(targets) and not os.listdir(targets), "the target file outlived the run", output)
        print("metrics cli: taken, malformed (3 ways) and unwritable are exit 2 with nothing written; "
              "a dead pushgateway is one warning; the target file is removed")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
