#!/usr/bin/env bash
# Issue 15's benchmark: vaultgate against its two peers, nginx and HAProxy
# (Debian's, each configured as Vaultwarden's wiki shows: TLS, HTTP/2 in,
# HTTP/1.1 keep-alive to the upstream, the WebSocket upgrade), at every
# ordinary load shape rather than one:
#
#   keep-alive GET (wrk):  1, 16, 64, 256 connections x 1 and 2 threads (2 only from 16)
#   HTTP/2 GET (h2load):   1, 16, 64 connections x 1, 10, 100 streams, 1 thread
#   256 MiB upload (curl)
#   hub echo (wsload):     16, 64, 256 hubs
#
# Each round runs every shape against the three proxies in turn, the order
# rotating from round to round; the table holds medians of the rounds, and
# for each metric the ratio of vaultgate to the best peer (> 1 is better for
# rates, < 1 for CPU and latency). CPU is utime+stime of the proxy's
# processes from /proc, per request or message. The load generators, the
# upstream and the proxy share the machine: run it on a quiet one.
#
#   bench/shapes.sh [rounds=3] [seconds=5] [out=bench/shapes]
#
# Writes OUT/results.tsv (round, proxy, shape, metric, value), OUT/table.md
# and, with gnuplot, OUT/*.png. Runs as root (installs nginx-light, haproxy,
# wrk, nghttp2-client, gnuplot-nox); uses 127.0.0.1:18102 and :18545-18547.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
secs=${2:-5}
out=${3:-bench/shapes}

. bench/common.sh
install_missing nginx:nginx-light haproxy:haproxy wrk:wrk h2load:nghttp2-client curl:curl gnuplot:gnuplot-nox
cargo build --release --quiet --bin vaultgate --example upstream --example wsload
limit=$(ulimit -Hn)
[ "$limit" = unlimited ] && limit=1048576
ulimit -n "$limit"
mkdir -p "$out"
dir=$(mktemp -d)
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  [ -f "$dir/nginx.pid" ] && kill "$(cat "$dir/nginx.pid")" 2>/dev/null
  [ -f "$dir/haproxy.pid" ] && kill "$(cat "$dir/haproxy.pid")" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT

# One address is the whole load here: the per-address caps would answer 429.
proxy_setup "$dir" 18102 18545 $'max_connections = 100000\nmax_connections_per_ip = 100000\nmax_upstream_per_ip = 1000000\nmax_hubs_per_ip = 100000'
./target/release/vaultgate --config "$dir/proxy.toml" 2>>"$dir/vaultgate.log" &
vg_pid=$!

nginx_setup "$dir" 18102 18546 "$limit"
nginx -c "$dir/nginx.conf" -e "$dir/nginx-error.log"

haproxy_setup "$dir" 18102 18547 2 $(((limit - 100) / 2))
haproxy -D -f "$dir/haproxy.cfg"
sleep 1

declare -A port=([vaultgate]=18545 [nginx]=18546 [haproxy]=18547)
pids_of() {
  case $1 in
    vaultgate) echo "$vg_pid" ;;
    nginx) pgrep -f "nginx: worker process" | tr '\n' ' ' ;;
    haproxy) cat "$dir/haproxy.pid" ;;
  esac
}
hz=$(getconf CLK_TCK)
ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
us_per() { awk -v t="$1" -v hz="$hz" -v n="$2" 'BEGIN {printf "%.1f", (n > 0) ? t / hz * 1e6 / n : 0}'; }
results="$out/results.tsv"
: >"$results"
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$1" "$2" "$3" "$4" >>"$results"; printf '  %-9s %-14s %-16s %s\n' "$1" "$2" "$3" "$4"; }

keepalive() { # proxy threads connections
  local shape="ka-t$2-c$3" pids before res n
  pids=$(pids_of "$1"); before=$(ticks $pids)
  res=$(wrk -t"$2" -c"$3" -d"${secs}s" --latency "https://localhost:${port[$1]}/alive" 2>&1)
  n=$(awk '/requests in/ {print $1}' <<<"$res")
  record "$1" "$shape" req_per_s "$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$res")"
  record "$1" "$shape" p99_us "$(awk '$1 == "99%" {
    v = $2 + 0; if ($2 ~ /us$/) m = 1; else if ($2 ~ /ms$/) m = 1000; else m = 1000000
    printf "%.0f", v * m }' <<<"$res")"
  record "$1" "$shape" cpu_us "$(us_per $(($(ticks $pids) - before)) "$n")"
}

http2() { # proxy connections streams
  local shape="h2-c$2-m$3" pids before res n
  pids=$(pids_of "$1"); before=$(ticks $pids)
  res=$(h2load -D "$secs" -c "$2" -m "$3" -t 1 "https://localhost:${port[$1]}/alive" 2>&1)
  n=$(awk '/^requests:/ {print $8}' <<<"$res")
  record "$1" "$shape" req_per_s "$(awk '/^finished in/ {printf "%.0f", $4}' <<<"$res")"
  # h2load gives no percentiles: the mean time per request, and the failures.
  record "$1" "$shape" mean_us "$(awk '/^time for request:/ {
    v = $6 + 0; if ($6 ~ /us$/) m = 1; else if ($6 ~ /ms$/) m = 1000; else m = 1000000
    printf "%.0f", v * m }' <<<"$res")"
  record "$1" "$shape" failed "$(awk '/^requests:/ {print $10 + $12}' <<<"$res")"
  record "$1" "$shape" cpu_us "$(us_per $(($(ticks $pids) - before)) "$n")"
}

upload() { # proxy
  local size=$((256 * 1024 * 1024)) pids before up
  pids=$(pids_of "$1"); before=$(ticks $pids)
  up=$(head -c "$size" /dev/zero | curl -sSk -o /dev/null -w '%{speed_upload}' -T - -X POST "https://localhost:${port[$1]}/api/upload")
  record "$1" upload-256M MiB_per_s "$(awk -v b="$up" 'BEGIN {printf "%.0f", b / 1048576}')"
  record "$1" upload-256M cpu_us_per_MiB "$(us_per $(($(ticks $pids) - before)) 256)"
}

echo_hubs() { # proxy hubs
  local shape="echo-$2" pids before res
  pids=$(pids_of "$1"); before=$(ticks $pids)
  res=$(./target/release/examples/wsload echo "wss://localhost:${port[$1]}/notifications/hub?access_token=x" "$2" "$secs")
  record "$1" "$shape" msgs_per_s "$(awk '{printf "%.0f", $7}' <<<"$res")"
  record "$1" "$shape" p99_us "$(awk '{print $11}' <<<"$res")"
  record "$1" "$shape" cpu_us "$(us_per $(($(ticks $pids) - before)) "$(awk '{print $3}' <<<"$res")")"
}

peers=(vaultgate nginx haproxy)
for round in $(seq "$rounds"); do
  # Rotate who goes first, so that no proxy always meets a warmer machine.
  order=("${peers[@]:$(((round - 1) % 3))}" "${peers[@]:0:$(((round - 1) % 3))}")
  echo "round $round: ${order[*]}"
  # wrk needs a connection per thread: no 1-connection, 2-thread shape.
  for t in 1 2; do for c in 1 16 64 256; do
    [ "$c" -lt "$t" ] && continue
    for p in "${order[@]}"; do keepalive "$p" "$t" "$c"; done
  done; done
  for c in 1 16 64; do for m in 1 10 100; do for p in "${order[@]}"; do http2 "$p" "$c" "$m"; done; done; done
  for p in "${order[@]}"; do upload "$p"; done
  for h in 16 64 256; do for p in "${order[@]}"; do echo_hubs "$p" "$h"; done; done
done

bench/shapes-report.sh "$out"
echo "results in $out/ (results.tsv, table.md, *.png)"
