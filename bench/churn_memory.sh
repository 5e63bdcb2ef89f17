#!/usr/bin/env bash
# Connection churn: 20,000 requests, each on a new TLS connection
# (Connection: close), through a release vaultgate; reports RSS and open
# descriptors before and after. Only 127.0.0.1 is used.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin vaultgate --example upstream
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
./target/release/examples/upstream 127.0.0.1:18001 >/dev/null 2>&1 &
printf 'listen = "127.0.0.1:18444"\nupstream = "http://127.0.0.1:18001"\n[log]\nlevel = "warn"\naccess = "off"\n' >"$dir/proxy.toml"
./target/release/vaultgate --config "$dir/proxy.toml" 2>"$dir/proxy.log" &
pid=$!
for _ in $(seq 50); do curl -sk https://127.0.0.1:18444/alive >/dev/null 2>&1 && break; sleep 0.1; done
kib() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$pid/status"; }
fds() { ls "/proc/$pid/fd" | wc -l; }
churn() { # $1 rounds of 1,000 new connections, 50 in parallel
  for _ in $(seq "$1"); do
    seq 1000 | xargs -P 50 -I{} curl -sk --http1.1 -H 'Connection: close' -o /dev/null https://127.0.0.1:18444/alive
  done
}
churn 2
echo "after 2,000 warm-up connections: rss_kib=$(kib VmRSS) fds=$(fds)"
start=$(date +%s)
churn 20
echo "after 20,000 more connections: rss_kib=$(kib VmRSS) peak_kib=$(kib VmHWM) fds=$(fds) seconds=$(( $(date +%s) - start ))"
