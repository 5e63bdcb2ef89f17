#!/usr/bin/env bash
# First side-by-side scenario of issue 6: HTTPS keep-alive GET of a small
# response through vaultgate, through nginx configured like Vaultwarden's wiki
# (TLS, HTTP/2, buffering off, 525M bodies), and straight to the upstream
# (plain HTTP: the ceiling). wrk, 2 threads, 50 connections, alternating
# rounds; reports req/s, p99, and each proxy's CPU microseconds per request
# from /proc. Only 127.0.0.1. Usage: bench/compare_get.sh [rounds] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
secs=${2:-10}
command -v nginx >/dev/null && command -v wrk >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk
}
cargo build --release --quiet --bin vaultgate --example upstream
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -f "$dir/nginx.pid" ] && kill "$(cat "$dir/nginx.pid")" 2>/dev/null; rm -rf "$dir"' EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
./target/release/examples/upstream 127.0.0.1:18002 >/dev/null 2>&1 &
printf 'listen = "127.0.0.1:18445"\nupstream = "http://127.0.0.1:18002"\n[tls]\ncert = "%s"\nkey = "%s"\n[log]\nlevel = "warn"\naccess = "off"\n' \
  "$dir/cert.pem" "$dir/key.pem" >"$dir/proxy.toml"
./target/release/vaultgate --config "$dir/proxy.toml" 2>"$dir/vaultgate.log" &
vg_pid=$!
cat >"$dir/nginx.conf" <<NGINX
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream vaultwarden-default { server 127.0.0.1:18002; keepalive 32; }
  map \$http_upgrade \$connection_upgrade { default upgrade; '' ""; }
  server {
    # Debian 12's nginx 1.22 spells HTTP/2 on the listen line.
    listen 127.0.0.1:18446 ssl http2;
    ssl_certificate $dir/cert.pem;
    ssl_certificate_key $dir/key.pem;
    client_max_body_size 525M;
    location / {
      proxy_http_version 1.1;
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \$connection_upgrade;
      proxy_set_header Host \$host;
      proxy_set_header X-Real-IP \$remote_addr;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_pass http://vaultwarden-default;
    }
  }
}
NGINX
nginx -c "$dir/nginx.conf" -e "$dir/nginx-error.log"
sleep 1
nginx_pids() { pgrep -f "nginx: worker process" | tr '\n' ' '; }

# CPU ticks (utime+stime) of a set of pids.
ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
hz=$(getconf CLK_TCK)

run() { # name url pids...
  local name=$1 url=$2; shift 2
  local before after out rps p99 n
  before=$(ticks "$@")
  out=$(wrk -t2 -c50 -d"${secs}s" --latency "$url" 2>&1)
  after=$(ticks "$@")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  local us="-"
  [ "$#" -gt 0 ] && us=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$n" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
  printf '%-10s %10s req/s  p99 %-8s  CPU %s us/req\n' "$name" "$rps" "$p99" "$us"
}

for r in $(seq "$rounds"); do
  echo "round $r"
  run direct "http://127.0.0.1:18002/alive"
  run vaultgate "https://localhost:18445/alive" "$vg_pid"
  # shellcheck disable=SC2046
  run nginx "https://localhost:18446/alive" $(nginx_pids)
done
