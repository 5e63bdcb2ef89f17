#!/usr/bin/env bash
# The table and charts of bench/shapes.sh, made from its OUT/results.tsv
# alone, so that a run can be reported again without measuring again:
#
#   bench/shapes-report.sh [out=bench/shapes]
#
# Writes OUT/table.md (medians, and vaultgate's ratio to the best peer: > 1
# is better for rates, < 1 for CPU and latency), OUT/medians.dat and, with
# gnuplot, OUT/ratio-FAMILY.png (the ratio against load, one line per
# metric, the goal's lines drawn in) and OUT/FAMILY-METRIC.png (the three
# proxies side by side).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/shapes}
results="$out/results.tsv"
[ -s "$results" ] || { echo "no $results: run bench/shapes.sh first" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

awk -F'\t' -v medians="$out/medians.dat" '
  { k = $3 SUBSEP $4; v[$2, k, ++n[$2, k]] = $5 + 0; if (!(k in seen)) { seen[k] = 1; keys[++m] = k } }
  function median(p, k,   c, i, j, a, t) {
    c = n[p, k]; if (!c) return ""
    for (i = 1; i <= c; i++) a[i] = v[p, k, i]
    for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return a[int((c + 1) / 2)]
  }
  END {
    print "| shape | metric | vaultgate | nginx | haproxy | vaultgate / best peer |"
    print "|---|---|---|---|---|---|"
    for (i = 1; i <= m; i++) {
      split(keys[i], sk, SUBSEP); vg = median("vaultgate", keys[i]); ng = median("nginx", keys[i]); hp = median("haproxy", keys[i])
      higher = sk[2] ~ /per_s$/
      best = higher ? (ng > hp ? ng : hp) : (ng < hp ? ng : hp)
      ratio = (sk[2] == "failed" || best == 0) ? "" : sprintf("%.2f", vg / best)
      printf "| %s | %s | %s | %s | %s | %s |\n", sk[1], sk[2], vg, ng, hp, ratio
      print sk[1], sk[2], vg, ng, hp, (ratio == "" ? "-" : ratio) > medians
    }
  }' "$results" | tee "$out/table.md"

command -v gnuplot >/dev/null || { echo "no gnuplot: table only" >&2; exit 0; }

# The three proxies side by side per shape, one chart per family and metric.
bars() { # family metric title
  local data="$dir/bars-$1-$2.dat"
  awk -v f="$1" -v m="$2" '$1 ~ "^" f "-" && $2 == m {print $1, $3, $4, $5}' "$out/medians.dat" >"$data"
  [ -s "$data" ] || return 0
  gnuplot <<GNUPLOT
set terminal pngcairo size 1000,420 noenhanced
set output "$out/$1-$2.png"
set title "$3"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set xtics rotate by -30
set key outside right top
set grid ytics
set yrange [0:*]
plot "$data" using 2:xtic(1) title "vaultgate", "" using 3 title "nginx", "" using 4 title "haproxy"
GNUPLOT
}

# vaultgate / best peer against load, a line per metric; the goal of issue 15
# is above 1.1 for rates and below 0.9 (CPU) or 1.0 (latency) for the rest.
ratio() { # family title metric...
  local family=$1 title=$2 plots="" m
  shift 2
  for m in "$@"; do
    awk -v f="$family" -v m="$m" '$1 ~ "^" f "-" && $2 == m && $6 != "-" {print NR, $1, $6}' "$out/medians.dat" >"$dir/ratio-$family-$m.dat"
    [ -s "$dir/ratio-$family-$m.dat" ] || continue
    plots="$plots${plots:+, }\"$dir/ratio-$family-$m.dat\" using 0:3:xtic(2) with linespoints lw 2 pt 7 title \"$m\""
  done
  [ -n "$plots" ] || return 0
  gnuplot <<GNUPLOT
set terminal pngcairo size 1000,420 noenhanced
set output "$out/ratio-$family.png"
set title "$title: vaultgate / best of nginx and HAProxy"
set xtics rotate by -30
set key outside right top
set grid ytics
set yrange [0:*]
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lc rgb "black"
set arrow from graph 0, first 1.1 to graph 1, first 1.1 nohead dt 3 lc rgb "dark-green"
set arrow from graph 0, first 0.9 to graph 1, first 0.9 nohead dt 3 lc rgb "dark-red"
plot $plots
GNUPLOT
}

ratio ka "keep-alive GET (wrk -tT -cC)" req_per_s cpu_us p99_us
ratio h2 "HTTP/2 GET (h2load -cC -mM -t1)" req_per_s cpu_us mean_us
ratio echo "hub echo (wsload, N hubs)" msgs_per_s cpu_us p99_us
bars ka req_per_s "keep-alive GET (wrk -tT -cC): requests/s"
bars ka cpu_us "keep-alive GET: proxy CPU per request (us)"
bars ka p99_us "keep-alive GET: p99 latency (us)"
bars h2 req_per_s "HTTP/2 GET (h2load -cC -mM -t1): requests/s"
bars h2 cpu_us "HTTP/2 GET: proxy CPU per request (us)"
bars echo msgs_per_s "hub echo (wsload, N hubs): messages/s"
bars echo cpu_us "hub echo: proxy CPU per message (us)"
bars echo p99_us "hub echo: round-trip p99 (us)"
