#!/usr/bin/env bash
# Two vaultgate binaries side by side on the same upstream, alternating
# within each round (the order rotating), for a lever's before and after in
# wall-clock terms (bench/instructions.sh counts instructions; this counts
# what the machine spends): keep-alive GET (wrk, 1 thread x 64 connections)
# and HTTP/2 GET (h2load, 16 connections x 10 streams), the shapes where
# issue 15's sweep found vaultgate behind HAProxy.
#
#   bench/ab.sh BINARY_A BINARY_B [rounds=3] [seconds=5]
#
# Prints one line per run (round, binary, shape, req/s, proxy CPU per
# request in µs from /proc) and the medians. Runs as root (installs wrk and
# nghttp2-client); uses 127.0.0.1:18112 and :18561-18562.
set -euo pipefail
cd "$(dirname "$0")/.."
a=$(realpath "${1:?usage: bench/ab.sh BINARY_A BINARY_B [rounds] [seconds]}")
b=$(realpath "${2:?usage: bench/ab.sh BINARY_A BINARY_B [rounds] [seconds]}")
rounds=${3:-3}
secs=${4:-5}
. bench/common.sh
install_missing wrk:wrk h2load:nghttp2-client
cargo build --release --quiet --example upstream
dir=$(mktemp -d)
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
limits=$'max_connections = 100000\nmax_connections_per_ip = 100000\nmax_upstream_per_ip = 1000000'
proxy_setup "$dir" 18112 18561 "$limits"
sed 's/127.0.0.1:18561/127.0.0.1:18562/' "$dir/proxy.toml" >"$dir/proxy-b.toml"
"$a" --config "$dir/proxy.toml" 2>>"$dir/a.log" &
pid_a=$!
"$b" --config "$dir/proxy-b.toml" 2>>"$dir/b.log" &
pid_b=$!
sleep 1
hz=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
: >"$dir/runs"
run() { # name pid port shape
  local before res n rate
  before=$(ticks "$2")
  case $4 in
    ka) res=$(wrk -t1 -c64 -d"${secs}s" "https://localhost:$3/alive" 2>&1)
        n=$(awk '/requests in/ {print $1}' <<<"$res")
        rate=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$res") ;;
    h2) res=$(h2load -t1 -c16 -m10 -D"$secs" "https://localhost:$3/alive" 2>&1)
        n=$(awk '/^requests:/ {print $8}' <<<"$res")
        rate=$(awk '/^finished in/ {gsub(",", "", $4); printf "%.0f", $4}' <<<"$res") ;;
  esac
  local cpu
  cpu=$(awk -v t="$(( $(ticks "$2") - before ))" -v hz="$hz" -v n="$n" 'BEGIN {printf "%.1f", (n > 0) ? t / hz * 1e6 / n : 0}')
  printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$1" "$4" "$rate" "$cpu" | tee -a "$dir/runs"
}
for round in $(seq 1 "$rounds"); do
  for shape in ka h2; do
    if [ $((round % 2)) = 1 ]; then
      run A "$pid_a" 18561 "$shape"; run B "$pid_b" 18562 "$shape"
    else
      run B "$pid_b" 18562 "$shape"; run A "$pid_a" 18561 "$shape"
    fi
  done
done
echo "medians (binary shape req/s cpu_us_per_request):"
for bin in A B; do
  for shape in ka h2; do
    awk -F'\t' -v b="$bin" -v s="$shape" '$2 == b && $3 == s {print $4 "\t" $5}' "$dir/runs" |
      sort -n | awk -v b="$bin" -v s="$shape" '{r[NR]=$1} END {print b, s, r[int((NR+1)/2)]}'
    awk -F'\t' -v b="$bin" -v s="$shape" '$2 == b && $3 == s {print $5}' "$dir/runs" |
      sort -n | awk -v b="$bin" -v s="$shape" '{c[NR]=$1} END {print b, s, "cpu", c[int((NR+1)/2)]}'
  done
done
