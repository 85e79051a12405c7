#!/usr/bin/env bash
# A test certificate authority for the TLS checks, made with openssl (P-256 keys, 2 days):
#
#   scripts/test_ca.sh ca DIR [NAME]     DIR/ca.pem and DIR/ca.key (a new CA named NAME)
#   scripts/test_ca.sh issue DIR NAME    DIR/NAME.pem and DIR/NAME.key: a server certificate for
#                                        localhost and 127.0.0.1, signed by DIR's CA
#
# The Rust tests (portico-testkit's TestCa), scripts/tls_interop.py, scripts/browser/wss.mjs and
# bench/tls.sh all make their certificates here.
set -euo pipefail
what=$1
dir=$2
key=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
case $what in
  ca)
    openssl req -x509 "${key[@]}" -keyout "$dir/ca.key" -out "$dir/ca.pem" \
      -subj "/CN=${3:-Portico Test CA}" -days 2 \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
    ;;
  issue)
    name=$3
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n' \
      > "$dir/$name.ext"
    openssl req "${key[@]}" -keyout "$dir/$name.key" -out "$dir/$name.csr" -subj "/CN=$name" 2>/dev/null
    openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
      -out "$dir/$name.pem" -days 2 -extfile "$dir/$name.ext" 2>/dev/null
    rm -f "$dir/$name.csr" "$dir/$name.ext"
    ;;
  *)
    echo "usage: test_ca.sh ca DIR [NAME] | issue DIR NAME" >&2
    exit 2
    ;;
esac
