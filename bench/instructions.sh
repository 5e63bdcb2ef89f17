#!/usr/bin/env bash
# Instructions vaultgate executes per unit of work, counted by valgrind's
# callgrind: numbers that do not move with the machine's noise, for
# comparing two versions of the code (BENCHMARKS.md, "Levers tried").
#
#   bench/instructions.sh h1|h2|h2x1|h2x100|h1bw|h2bw|echo [binary=target/release/vaultgate]
#
# h1: a keep-alive HTTPS GET (h2load --h1, 10 connections);
# h2: an HTTP/2 GET (h2load, 10 connections, 10 streams each; h2x1 and
#     h2x100 with 1 and 100 streams each); h1bw and h2bw: the same with the
#     headers a Bitwarden client sends on every API call (a bearer token of
#     a kilobyte, its device and version headers): about 1.3 KB of head;
# echo: one hub WebSocket message there and back (wsload, 10 hubs).
# Each is measured twice, small and large (1,000 and 3,000 requests; 3 and 6
# seconds of echo), and the difference divided by the difference in work, so
# that start-up and the TLS handshakes cancel out. With KEEP=DIR, callgrind's
# two outputs are kept there (callgrind_annotate DIR/large.out shows where
# the instructions go). With
# PROXY=haproxy, Debian's HAProxy (one thread, configured as in
# bench/common.sh) is counted instead, under the same load (not echo). With
# CACHE=1, callgrind also simulates the caches and the HTTP loads print the
# first-level instruction and data cache misses and the last-level misses
# per request too (the cost that instruction counts hide; the simulated
# caches are valgrind's model of this machine's, not measured ones). Runs as root (installs
# valgrind and nghttp2-client); uses 127.0.0.1:18012 and :18455.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:?usage: bench/instructions.sh h1|h2|h2x1|h2x100|h1bw|h2bw|echo [binary]}
. bench/common.sh
install_missing valgrind:valgrind h2load:nghttp2-client
[ "${PROXY:-vaultgate}" = haproxy ] && install_missing haproxy:haproxy
cargo build --release --quiet --bin vaultgate --example upstream --example wsload
bin=$(realpath "${2:-target/release/vaultgate}")
dir=$(mktemp -d)
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

# One worker: under valgrind the threads take turns, and a second worker
# would only change how work is batched, from run to run. One address is the
# whole load (h2x100: 1,000 requests at once): the per-address caps would answer 429.
proxy_setup "$dir" 18012 18455 $'workers = 1\nmax_connections_per_ip = 100000\nmax_upstream_per_ip = 1000000'
server=("$bin" --config "$dir/proxy.toml")
if [ "${PROXY:-vaultgate}" = haproxy ]; then
  # maxconn: room under the file limit valgrind leaves (HAProxy wants two per connection).
  haproxy_setup "$dir" 18012 18455 1 4000
  # -db: in the foreground, one process; SIGUSR1 below stops it softly.
  server=(haproxy -db -f "$dir/haproxy.cfg")
fi


# Total instructions of one run of vaultgate under callgrind while `load`
# (the rest of the arguments) runs against it; the load's own output goes to
# $dir/load.
counted() {
  local out="$dir/callgrind.out" pid
  rm -f "$out"
  local sim=()
  [ -n "${CACHE:-}" ] && sim=(--cache-sim=yes)
  valgrind --tool=callgrind "${sim[@]}" --callgrind-out-file="$out" "${server[@]}" 2>"$dir/valgrind.log" &
  pid=$!
  for _ in $(seq 150); do ss -ltn | grep -q 127.0.0.1:18455 && break; sleep 0.2; done
  "$@" >"$dir/load" 2>&1
  if [ "${PROXY:-vaultgate}" = haproxy ]; then kill -USR1 "$pid"; else kill -INT "$pid"; fi
  wait "$pid" || true
  if [ -n "${KEEP:-}" ]; then
    mkdir -p "$KEEP"
    if [ -f "$KEEP/small.out" ]; then cp "$out" "$KEEP/large.out"; else cp "$out" "$KEEP/small.out"; fi
  fi
  # Instructions; with CACHE=1 also D1 misses (read + write) and LL misses.
  if [ -n "${CACHE:-}" ]; then
    awk '/^events:/ {for (i = 2; i <= NF; i++) at[$i] = i}
      /^totals:/ {print $at["Ir"], $at["D1mr"] + $at["D1mw"], $at["ILmr"] + $at["DLmr"] + $at["DLmw"], $at["I1mr"]}' "$out" >"$dir/cache"
    tail -1 "$dir/cache" >>"$dir/caches"
    cut -d' ' -f1 "$dir/cache"
  else
    awk '/^totals:/ {print $2}' "$out"
  fi
}

case $what in
  h1 | h2 | h2x1 | h2x100 | h1bw | h2bw)
    # HTTP/1.1: one request at a time per connection (no pipelining).
    case $what in
      h1) how=(--h1 -m 1) ;;
      h2) how=(-m 10) ;;
      h1bw) how=(--h1 -m 1) ;;
      h2bw) how=(-m 10) ;;
      *) how=(-m "${what#h2x}") ;;
    esac
    if [[ $what == *bw ]]; then
      token=$(head -c 1000 /dev/zero | tr '\0' 'e')
      how+=(-H "authorization: Bearer $token" -H "device-type: 8" -H "bitwarden-client-name: desktop"
        -H "bitwarden-client-version: 2025.1.0" -H "accept-language: en-US,en;q=0.9"
        -H "user-agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Bitwarden/2025.1.0 Chrome/130.0.0.0 Electron/33.2.1 Safari/537.36")
    fi
    small=$(counted h2load "${how[@]}" -n 1000 -c 10 https://localhost:18455/alive)
    grep -q "1000 succeeded" "$dir/load" || { cat "$dir/load"; exit 1; }
    large=$(counted h2load "${how[@]}" -n 3000 -c 10 https://localhost:18455/alive)
    grep -q "3000 succeeded" "$dir/load" || { cat "$dir/load"; exit 1; }
    echo "$what: $(((large - small) / 2000)) instructions per request ($small for 1,000, $large for 3,000)"
    if [ -n "${CACHE:-}" ]; then
      awk 'NR == 1 {d = $2; l = $3; i = $4} NR == 2 {printf "%s: %d I1, %d D1 and %d LL misses per request\n", w, ($4 - i) / 2000, ($2 - d) / 2000, ($3 - l) / 2000}' w="$what" "$dir/caches"
    fi
    ;;
  echo)
    url="wss://localhost:18455/notifications/hub?access_token=x"
    small=$(counted ./target/release/examples/wsload echo "$url" 10 3)
    small_msgs=$(awk '{print $3}' "$dir/load")
    large=$(counted ./target/release/examples/wsload echo "$url" 10 6)
    large_msgs=$(awk '{print $3}' "$dir/load")
    echo "echo: $(((large - small) / (large_msgs - small_msgs))) instructions per message" \
      "($small for $small_msgs, $large for $large_msgs)"
    ;;
  *)
    echo "usage: bench/instructions.sh h1|h2|h2x1|h2x100|h1bw|h2bw|echo [binary]" >&2
    exit 2
    ;;
esac
