#!/usr/bin/env bash
# promtool check config / check rules / test rules on deploy/prometheus (issue 11), and a JSON
# sanity check of the Grafana files. Exit 77 (skipped) when promtool is absent outside CI.
set -euo pipefail
deploy=$(cd "$1" && pwd)
if ! command -v promtool >/dev/null; then
  if [ -n "${CI:-}" ]; then echo "promtool missing in CI: deploy/install-deps.sh installs prometheus" >&2; exit 1; fi
  echo "SKIP: promtool not installed (apt-get install prometheus, or deploy/install-deps.sh)"; exit 77
fi
cd "$deploy/prometheus"
promtool check config prometheus.yml
promtool check rules rules.yml
promtool test rules rules_test.yml
python3 -m json.tool "$deploy/grafana/dashboards/repshape.json" >/dev/null
echo "prometheus files: config, rules and rule unit tests pass; dashboard JSON parses"
