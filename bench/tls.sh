#!/usr/bin/env bash
# TLS on the local host, measured: handshakes per second (full and resumed) on the HTTPS, MQTTS
# and secure WebSocket listeners, and the HTTP scenarios over plaintext and over HTTPS against
# the same server, one after the other.
#
#   bench/tls.sh <release dir>      e.g.  bench/tls.sh ~/.cache/portico-target/release
#
# The release dir must hold `portico` and `portico-bench` (cargo build --release -p portico
# -p portico-bench). Makes its own test CA (scripts/test_ca.sh, openssl); everything listens on
# loopback and every run is bounded in count and time.
set -euo pipefail
bin=$1
data=$(mktemp -d)
tls=$(mktemp -d)
bash "$(dirname "$0")/../scripts/test_ca.sh" ca "$tls" "Portico Bench CA"
bash "$(dirname "$0")/../scripts/test_ca.sh" issue "$tls" server

export PORTICO_DATA_DIR=$data PORTICO_LOG=warn
export PORTICO_HTTP_ADDR=127.0.0.1:18080 PORTICO_METRICS_ADDR=127.0.0.1:19090
export PORTICO_MQTT_ADDR=127.0.0.1:11883 PORTICO_MQTT_WS_ADDR=127.0.0.1:18083
export PORTICO_HTTPS_ADDR=127.0.0.1:18443 PORTICO_MQTTS_ADDR=127.0.0.1:18883 PORTICO_WSS_ADDR=127.0.0.1:18084
export PORTICO_TLS_CERT=$tls/server.pem PORTICO_TLS_KEY=$tls/server.key
"$bin/portico" serve > /dev/null &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$data" "$tls"' EXIT
for _ in $(seq 100); do
  curl -sf --cacert "$tls/ca.pem" "https://localhost:18443/healthz" > /dev/null && break
  sleep 0.1
done
echo "## TLS: $(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || true) $bin"
echo "### handshakes"
timeout 300 "$bin/portico-bench" tls-handshakes --ca "$tls/ca.pem" --duration 10s \
  --listener https=127.0.0.1:18443 --listener mqtts=127.0.0.1:18883 --listener wss=127.0.0.1:18084
echo "### http, plaintext"
timeout 900 "$bin/portico-bench" http --connections 500 --duration 10s
echo "### http, over HTTPS"
timeout 900 "$bin/portico-bench" http --connections 500 --duration 10s \
  --base https://localhost:18443 --ca "$tls/ca.pem"
