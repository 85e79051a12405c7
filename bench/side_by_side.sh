#!/usr/bin/env bash
# Runs the HTTP, MQTT, documents and Lambda-init benchmarks against two builds, one after the
# other on this machine, so a change can be compared with what came before it:
#
#   bench/side_by_side.sh <label> <release dir>      e.g.  before ~/.cache/portico-before/release
#
# The release dir must hold `portico`, `portico-bench` and `portico-lambda` (cargo build --release
# -p portico -p portico-bench -p portico-lambda). Results go to stdout; every run is bounded in
# count and time, and everything listens on loopback.
set -euo pipefail
label=$1
bin=$2
data=$(mktemp -d)
export PORTICO_DATA_DIR=$data PORTICO_LOG=warn
export PORTICO_HTTP_ADDR=127.0.0.1:18080 PORTICO_METRICS_ADDR=127.0.0.1:19090
export PORTICO_MQTT_ADDR=127.0.0.1:11883 PORTICO_MQTT_WS_ADDR=127.0.0.1:18083
"$bin/portico" serve > /dev/null &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 100); do
  curl -sf "http://$PORTICO_HTTP_ADDR/healthz" > /dev/null && break
  sleep 0.1
done
echo "## $label: $(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || true) $bin"
echo "### http"
timeout 600 "$bin/portico-bench" http --connections 500 --duration 10s
echo "### mqtt"
timeout 600 "$bin/portico-bench" mqtt --scenarios fanout,fanin,alert
echo "### docs"
timeout 600 "$bin/portico-bench" docs --small 200 --medium 20 --large 1 --sustain-secs 10 \
  --server-pid "$server"
kill $server
wait $server 2>/dev/null || true
echo "### lambda init (local backend, external issuer: no key generation)"
timeout 600 "$bin/portico-bench" lambda --binary "$bin/portico-lambda" --handler http --runs 100 \
  --env PORTICO_AUTH_ISSUER=https://example.okta.com/oauth2/default
