#!/usr/bin/env bash
# Starts or stops a local Prometheus + Pushgateway (Debian's `prometheus`, `prometheus-pushgateway`)
# watching a repshape results directory: what a user runs on a workstation, and what the tests use.
#
#   deploy/monitoring.sh start RESULTS   # scrape RESULTS/targets/*.json; prints the URLs
#   deploy/monitoring.sh stop RESULTS    # stop both servers, delete their state
#
# Both listen on 127.0.0.1 only. State (config, TSDB, PIDs, logs) lives in a temporary directory
# named in RESULTS/.monitoring; nothing is installed as a service. Environment:
#   PROMETHEUS_PORT (9090)  PUSHGATEWAY_PORT (9091)  SCRAPE_INTERVAL (15s)
# Runs then use `--set metrics.listen=127.0.0.1:0 --set metrics.targets_dir=RESULTS/targets
# --set metrics.pushgateway=127.0.0.1:$PUSHGATEWAY_PORT`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
usage() { echo "usage: $0 start|stop RESULTS" >&2; exit 2; }
(($# == 2)) || usage
action=$1
results=$2
pointer=$results/.monitoring

wait_ready() {  # URL NAME PID LOG
  for _ in $(seq 1 150); do
    if curl -fs -o /dev/null "$1"; then return 0; fi
    if ! kill -0 "$3" 2>/dev/null; then
      echo "monitoring: $2 exited during start-up; its log ($4):" >&2
      tail -n 20 "$4" >&2
      return 1
    fi
    sleep 0.2
  done
  echo "monitoring: $2 not ready at $1 after 30 s; log $4" >&2
  return 1
}

stop_state() {  # STATE: stop what it started (by PID), then delete it
  local state=$1
  for name in prometheus pushgateway; do
    [ -f "$state/$name.pid" ] || continue
    local pid
    pid=$(cat "$state/$name.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$state"
}

case $action in
  start)
    for tool in prometheus prometheus-pushgateway curl; do
      command -v "$tool" >/dev/null || { echo "monitoring: $tool not found; run deploy/install-deps.sh" >&2; exit 1; }
    done
    if [ -f "$pointer" ]; then
      echo "monitoring: already started for $results (state $(cat "$pointer")); stop it first" >&2
      exit 1
    fi
    prom_port=${PROMETHEUS_PORT:-9090}
    push_port=${PUSHGATEWAY_PORT:-9091}
    interval=${SCRAPE_INTERVAL:-15s}
    mkdir -p "$results/targets"
    results_abs=$(cd "$results" && pwd)
    state=$(mktemp -d "${TMPDIR:-/tmp}/repshape-monitoring.XXXXXX")
    echo "$state" > "$pointer"
    trap 'stop_state "$state"; rm -f "$pointer"' ERR
    sed -e "s|results/targets/\*.json|$results_abs/targets/*.json|" \
        -e "s|127.0.0.1:9091|127.0.0.1:$push_port|" \
        -e "s|^\(  scrape_interval:\) 15s|\1 $interval|" \
        -e "s|^\(  evaluation_interval:\) 15s|\1 $interval|" \
        "$here/prometheus/prometheus.yml" > "$state/prometheus.yml"
    cp "$here/prometheus/rules.yml" "$state/rules.yml"

    prometheus-pushgateway --web.listen-address="127.0.0.1:$push_port" >"$state/pushgateway.log" 2>&1 &
    echo $! > "$state/pushgateway.pid"
    prometheus --config.file="$state/prometheus.yml" --storage.tsdb.path="$state/data" \
      --web.listen-address="127.0.0.1:$prom_port" >"$state/prometheus.log" 2>&1 &
    echo $! > "$state/prometheus.pid"
    wait_ready "http://127.0.0.1:$push_port/-/ready" pushgateway "$(cat "$state/pushgateway.pid")" "$state/pushgateway.log"
    wait_ready "http://127.0.0.1:$prom_port/-/ready" prometheus "$(cat "$state/prometheus.pid")" "$state/prometheus.log"
    trap - ERR
    echo "monitoring: Prometheus http://127.0.0.1:$prom_port  Pushgateway http://127.0.0.1:$push_port  state $state"
    echo "monitoring: runs: --set metrics.listen=127.0.0.1:0 --set metrics.targets_dir=$results_abs/targets --set metrics.pushgateway=127.0.0.1:$push_port"
    ;;
  stop)
    if [ ! -f "$pointer" ]; then echo "monitoring: not started for $results" >&2; exit 0; fi
    stop_state "$(cat "$pointer")"
    rm -f "$pointer"
    echo "monitoring: stopped"
    ;;
  *) usage ;;
esac
