#!/usr/bin/env bash
# The HTTP scenarios with the log store on and off, at PORTICO_LOG=info (a line per invocation)
# with stdout to a file, alternating off / on for ROUNDS rounds against one seeded data dir, so
# machine noise shows as the spread between rounds of the same setting.
#
#   bench/logs_store.sh <release dir> [ROUNDS]      e.g.  bench/logs_store.sh ~/.cache/portico-target/release 2
#
# The release dir must hold `portico` and `portico-bench`. Everything listens on loopback and
# every run is bounded in count and time.
set -euo pipefail
bin=$1
rounds=${2:-2}
data=$(mktemp -d)
out=$(mktemp -d)
export PORTICO_DATA_DIR=$data PORTICO_LOG=info
export PORTICO_HTTP_ADDR=127.0.0.1:18080 PORTICO_METRICS_ADDR=127.0.0.1:19090
export PORTICO_MQTT_ADDR=127.0.0.1:11883 PORTICO_MQTT_WS_ADDR=127.0.0.1:18083
server=
trap 'kill $server 2>/dev/null || true; rm -rf "$data" "$out"' EXIT
echo "## log store on / off: $(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || true) $bin"
for round in $(seq "$rounds"); do
  for store in false true; do
    PORTICO_LOGS_STORE=$store "$bin/portico" serve > "$out/serve.log" &
    server=$!
    for _ in $(seq 100); do
      curl -sf "http://$PORTICO_HTTP_ADDR/healthz" > /dev/null && break
      sleep 0.1
    done
    echo "### round $round, store $store"
    timeout 600 "$bin/portico-bench" http --connections 500 --duration "${DURATION:-10s}" --accounts 1000 2> /dev/null \
      | grep '^| [GP]'
    curl -s "http://$PORTICO_METRICS_ADDR/metrics" | grep -E '^portico_log_lines_(stored|dropped)_total' || true
    kill $server
    wait $server 2>/dev/null || true
  done
done
