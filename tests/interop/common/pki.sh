#!/usr/bin/env bash
# Throwaway PKI for the interop suites: tests/interop/common/pki.sh DIR
# Writes to DIR: ca.key/ca.pem (a P-256 CA, 2 days), server.key/leaf.pem (a
# leaf for cable.ua5v.com, the tunnel host a desktop derives from domain ID 0;
# also localhost and 127.0.0.1) and chain.pem (leaf, then CA) for
# `hybridd tunnel-server --tls-cert`. openssl's chatter goes to DIR/openssl.log.
set -euo pipefail
dir=${1:?usage: pki.sh DIR}
mkdir -p "$dir"
cd "$dir"
{
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout ca.key -out ca.pem -days 2 -subj "/CN=hybridd interop throwaway CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout server.key -out server.csr -subj /CN=cable.ua5v.com
  printf '%s\n' 'subjectAltName=DNS:cable.ua5v.com,DNS:localhost,IP:127.0.0.1' \
    'basicConstraints=CA:FALSE' 'extendedKeyUsage=serverAuth' 'keyUsage=critical,digitalSignature' >ext.cnf
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile ext.cnf -out leaf.pem
} >>openssl.log 2>&1 || { echo "pki.sh: openssl failed, see $dir/openssl.log" >&2; exit 1; }
cat leaf.pem ca.pem >chain.pem
