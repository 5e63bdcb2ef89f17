#!/usr/bin/env bash
# Measures vaultgate's memory while 1 GiB streams through it each way.
# Usage: bench/stream_memory.sh            (builds release binaries first)
# Prints RSS after start, peak RSS (VmHWM) after the download and after the
# upload, and the throughput curl saw. Only 127.0.0.1 is used.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin vaultgate --example upstream
GiB=$((1024 * 1024 * 1024))
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT

./target/release/examples/upstream 127.0.0.1:18000 >"$dir/upstream.log" 2>&1 &
cat >"$dir/proxy.toml" <<TOML
listen = "127.0.0.1:18443"
upstream = "http://127.0.0.1:18000"
[log]
level = "warn"
TOML
./target/release/vaultgate --config "$dir/proxy.toml" 2>"$dir/proxy.log" &
pid=$!
for _ in $(seq 50); do curl -sk https://127.0.0.1:18443/alive >/dev/null 2>&1 && break; sleep 0.1; done

kib() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$pid/status"; }
echo "rss_after_start_kib=$(kib VmRSS)"
curl -sk --http1.1 -o /dev/null -w 'download_http1_MiBps=%{speed_download}\n' \
  "https://127.0.0.1:18443/download?size=$GiB" | awk -F= '{printf "%s=%.0f\n", $1, $2/1048576}'
curl -sk --http2 -o /dev/null -w 'download_h2_MiBps=%{speed_download}\n' \
  "https://127.0.0.1:18443/download?size=$GiB" | awk -F= '{printf "%s=%.0f\n", $1, $2/1048576}'
echo "peak_rss_after_downloads_kib=$(kib VmHWM)"
head -c "$GiB" /dev/zero | curl -sk --http1.1 -T - -X POST -o "$dir/echo.json" \
  -w 'upload_http1_MiBps=%{speed_upload}\n' https://127.0.0.1:18443/api/upload | awk -F= '{printf "%s=%.0f\n", $1, $2/1048576}'
grep -o '"body_len":[0-9]*' "$dir/echo.json"
echo "peak_rss_after_upload_kib=$(kib VmHWM)"
echo "rss_at_end_kib=$(kib VmRSS)"
