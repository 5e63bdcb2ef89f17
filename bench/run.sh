#!/usr/bin/env bash
# Issue 6's benchmark, one command: vaultgate, nginx configured like
# Vaultwarden's wiki (TLS, HTTP/2, buffering off, 525M bodies, the hub
# upgrade headers) and the upstream directly (the limit), side by side on
# 127.0.0.1, alternating, medians of several rounds. CPU seconds and memory
# of the proxies come from /proc.
#
#   bench/run.sh [rounds=3] [seconds=10] [hubs=10000]
#
# Scenarios: 1 keep-alive HTTPS GET (wrk), 2 full TLS 1.3 handshakes
# (wsload), 3 HTTP/2 GET (h2load), 4 256 MiB download and upload (curl),
# 5 hub echo (wsload), 6 idle hubs and 7 fan-out to all of them (wsload).
# Runs as root (installs nginx-light, wrk, nghttp2-client); raises the soft
# descriptor limit to the hard one. Prints the per-round lines, then a table of medians.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
secs=${2:-10}
# A proxied hub holds two descriptors (client and upstream side): as many
# hubs as the hard limit allows, up to 10,000.
limit=$(ulimit -Hn)
[ "$limit" = unlimited ] && limit=1048576
max_hubs=$(((limit - 500) / 2))
hubs=${3:-$((max_hubs < 10000 ? max_hubs : 10000))}

. bench/common.sh
install_missing nginx:nginx-light wrk:wrk h2load:nghttp2-client curl:curl
cargo build --release --quiet --bin vaultgate --example upstream --example wsload
ulimit -n "$limit"
dir=$(mktemp -d)
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  [ -f "$dir/nginx.pid" ] && kill "$(cat "$dir/nginx.pid")" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT

proxy_setup "$dir" 18002 18445 $'max_connections = 100000\nmax_connections_per_ip = 100000'
start_vaultgate() {
  ./target/release/vaultgate --config "$dir/proxy.toml" 2>>"$dir/vaultgate.log" &
  vg_pid=$!
}
start_vaultgate
nginx_setup "$dir" 18002 18446 "$limit"
start_nginx() { nginx -c "$dir/nginx.conf" -e "$dir/nginx-error.log"; }
start_nginx
sleep 1
# A fresh process, so that memory per hub is not hidden by memory an earlier
# scenario left allocated.
restart() {
  case $1 in
    vaultgate) kill "$vg_pid"; wait "$vg_pid" 2>/dev/null || true; start_vaultgate ;;
    nginx) nginx -c "$dir/nginx.conf" -s stop; while [ -f "$dir/nginx.pid" ]; do sleep 0.1; done; start_nginx ;;
  esac
  sleep 1
}
nginx_pids() { pgrep -f "nginx: worker process" | tr '\n' ' '; }

hz=$(getconf CLK_TCK)
ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
sys_ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $15}' "/proc/$p/stat"))); done; echo "$t"; }
rss_kib() { local t=0; for p in "$@"; do t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status"))); done; echo "$t"; }
writes() { local t=0; for p in "$@"; do t=$((t + $(awk '/^write_bytes/ {print $2}' "/proc/$p/io"))); done; echo "$t"; }
results="$dir/results"
: >"$results"
record() { echo "$1 $2 $3" >>"$results"; printf '  %-10s %-22s %s\n' "$1" "$2" "$3"; }
us_per() { awk -v t="$1" -v hz="$hz" -v n="$2" 'BEGIN {printf "%.1f", (n > 0) ? t / hz * 1e6 / n : 0}'; }

record vaultgate rss_after_start_MiB "$(awk -v k="$(rss_kib "$vg_pid")" 'BEGIN {printf "%.1f", k / 1024}')"

declare -A port=([direct]=18002 [vaultgate]=18445 [nginx]=18446)
pids_of() { case $1 in vaultgate) echo "$vg_pid" ;; nginx) nginx_pids ;; *) echo "" ;; esac; }
base_url() { case $1 in direct) echo "http://127.0.0.1:18002" ;; *) echo "https://localhost:${port[$1]}" ;; esac; }
hub_url() { case $1 in direct) echo "ws://127.0.0.1:18002" ;; *) echo "wss://localhost:${port[$1]}" ;; esac; }

s1_get() { # target
  local pids before sys_before out n
  pids=$(pids_of "$1"); before=$(ticks $pids); sys_before=$(sys_ticks $pids)
  out=$(wrk -t2 -c50 -d"${secs}s" --latency "$(base_url "$1")/alive" 2>&1)
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  record "$1" get_req_per_s "$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
  record "$1" get_p99_us "$(awk '$1 == "99%" {
    v = $2 + 0; if ($2 ~ /us$/) m = 1; else if ($2 ~ /ms$/) m = 1000; else m = 1000000
    printf "%.0f", v * m }' <<<"$out")"
  if [ -n "$pids" ]; then
    record "$1" get_cpu_us_per_req "$(us_per $(($(ticks $pids) - before)) "$n")"
    record "$1" get_kernel_us_per_req "$(us_per $(($(sys_ticks $pids) - sys_before)) "$n")"
  fi
  return 0
}

s2_handshakes() {
  local pids before out n
  pids=$(pids_of "$1"); before=$(ticks $pids)
  out=$(./target/release/examples/wsload handshakes "localhost:${port[$1]}" "$secs" 50)
  n=$(awk '{print $2}' <<<"$out")
  record "$1" handshakes_per_s "$(awk '{print $NF}' <<<"$out")"
  record "$1" handshake_cpu_us "$(us_per $(($(ticks $pids) - before)) "$n")"
}

s3_h2() {
  local pids before out n h1=""
  [ "$1" = direct ] && h1=--h1
  pids=$(pids_of "$1"); before=$(ticks $pids)
  # 1,000 requests per connection: nginx closes an HTTP/2 connection after
  # that many (keepalive_requests) and h2load does not reconnect.
  out=$(h2load $h1 -n 50000 -c 50 -m 10 -t 2 "$(base_url "$1")/alive" 2>&1)
  grep -q "50000 succeeded" <<<"$out" || echo "  (h2load: $(grep '^requests:' <<<"$out"))"
  n=$(awk '/^requests:/ {print $4}' <<<"$out")
  record "$1" h2_req_per_s "$(awk '/^finished in/ {print $4}' <<<"$out")"
  [ -n "$pids" ] && record "$1" h2_cpu_us_per_req "$(us_per $(($(ticks $pids) - before)) "$n")"
  return 0
}

s4_stream() {
  local pids size=$((256 * 1024 * 1024)) rss0 peak w0 down up sampler
  pids=$(pids_of "$1")
  if [ -n "$pids" ]; then
    rss0=$(rss_kib $pids); w0=$(writes $pids)
    echo "$rss0" >"$dir/peak"
    # Sample the proxy's RSS while the transfers run; keep the peak.
    (while :; do r=$(rss_kib $pids 2>/dev/null || echo 0); [ "$r" -gt "$(cat "$dir/peak")" ] && echo "$r" >"$dir/peak"; sleep 0.05; done) &
    sampler=$!
  fi
  down=$(curl -sSk -o /dev/null -w '%{speed_download}' "$(base_url "$1")/download?size=$size")
  up=$(head -c "$size" /dev/zero | curl -sSk -o /dev/null -w '%{speed_upload}' -T - -X POST "$(base_url "$1")/api/upload")
  record "$1" download_MiB_per_s "$(awk -v b="$down" 'BEGIN {printf "%.0f", b / 1048576}')"
  record "$1" upload_MiB_per_s "$(awk -v b="$up" 'BEGIN {printf "%.0f", b / 1048576}')"
  if [ -n "$pids" ]; then
    kill "$sampler"; wait "$sampler" 2>/dev/null || true
    record "$1" stream_rss_growth_MiB "$(awk -v a="$(cat "$dir/peak")" -v b="$rss0" 'BEGIN {printf "%.1f", (a - b) / 1024}')"
    record "$1" stream_disk_writes_B "$(($(writes $pids) - w0))"
  fi
}

s5_echo() {
  local pids before out
  pids=$(pids_of "$1"); before=$(ticks $pids)
  out=$(./target/release/examples/wsload echo "$(hub_url "$1")/notifications/hub?access_token=x" 50 "$secs")
  [ -n "$pids" ] && record "$1" echo_cpu_us_per_msg "$(us_per $(($(ticks $pids) - before)) "$(awk '{print $3}' <<<"$out")")"
  record "$1" echo_msgs_per_s "$(awk '{print $7}' <<<"$out")"
  record "$1" echo_rtt_p50_us "$(awk '{print $9}' <<<"$out")"
  record "$1" echo_rtt_p99_us "$(awk '{print $11}' <<<"$out")"
}

s67_hubs() {
  local pids rss0 ready rss1 out opened
  restart "$1"
  pids=$(pids_of "$1")
  [ -n "$pids" ] && rss0=$(rss_kib $pids)
  coproc LOAD { ./target/release/examples/wsload hubs "$(hub_url "$1")/notifications/hub?access_token=x" "$hubs" http://127.0.0.1:18002/api/ciphers 5; }
  read -r ready <&"${LOAD[0]}"
  opened=$(awk '{print $3}' <<<"$ready")
  record "$1" hubs_open "$opened"
  record "$1" hubs_open_seconds "$(awk '{print $7}' <<<"$ready")"
  if [ -n "$pids" ]; then
    sleep 1
    rss1=$(rss_kib $pids)
    record "$1" idle_hub_KiB_each "$(awk -v a="$rss1" -v b="$rss0" -v n="$opened" 'BEGIN {printf "%.1f", (a - b) / n}')"
  fi
  echo go >&"${LOAD[1]}"
  read -r out <&"${LOAD[0]}"
  wait "$LOAD_PID" 2>/dev/null || true
  record "$1" fanout_p50_us "$(awk '{print $7}' <<<"$out")"
  record "$1" fanout_p99_us "$(awk '{print $9}' <<<"$out")"
  record "$1" fanout_max_us "$(awk '{print $11}' <<<"$out")"
  sleep 2 # let the proxies close the tunnels before the next run
}

for r in $(seq "$rounds"); do
  for t in direct vaultgate nginx; do
    echo "round $r: $t"
    s1_get "$t"
    [ "$t" != direct ] && s2_handshakes "$t"
    s3_h2 "$t"
    s4_stream "$t"
    s5_echo "$t"
    s67_hubs "$t"
  done
done

echo
echo "medians of $rounds rounds (${secs}s runs, $hubs hubs); ratio = vaultgate / nginx"
awk '
  { key = $2; v[$1, key, ++n[$1, key]] = $3; keys[key] = 1; order[key] = order[key] ? order[key] : NR }
  function median(t, k,   i, j, c, a, tmp) {
    c = n[t, k]; if (!c) return "-"
    for (i = 1; i <= c; i++) a[i] = v[t, k, i] + 0
    for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (a[j] < a[i]) { tmp = a[i]; a[i] = a[j]; a[j] = tmp }
    return a[int((c + 1) / 2)]
  }
  END {
    printf "| %-22s | %12s | %12s | %12s | %7s |\n", "metric", "vaultgate", "nginx", "direct", "ratio"
    printf "|%s|%s|%s|%s|%s|\n", "------------------------", "--------------", "--------------", "--------------", "---------"
    m = 0; for (k in keys) sorted[++m] = k
    for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (order[sorted[j]] < order[sorted[i]]) { tmp = sorted[i]; sorted[i] = sorted[j]; sorted[j] = tmp }
    for (i = 1; i <= m; i++) {
      k = sorted[i]; a = median("vaultgate", k); b = median("nginx", k); d = median("direct", k)
      ratio = (a != "-" && b != "-" && b + 0 != 0) ? sprintf("%.2f", a / b) : "-"
      printf "| %-22s | %12s | %12s | %12s | %7s |\n", k, a, b, d, ratio
    }
  }' "$results"
