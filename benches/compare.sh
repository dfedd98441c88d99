#!/usr/bin/env bash
# Load comparison on 127.0.0.1: larder vs nginx proxy_cache vs Varnish, against the
# machine's ceiling (nginx serving the file directly), all caching one nginx origin.
#
#   benches/compare.sh                      # 3 rounds x 10 s per run
#   ROUNDS=5 DURATION=15 benches/compare.sh
#   LARDER_B=/path/to/previous/larder CONTESTANTS="larder larder_b nginx" FILES=1k.json \
#     ENCODINGS=gzip benches/compare.sh     # this build against a previous one, same run
#   CONNS=1 FILES=nostore/1k.json ENCODINGS=identity benches/compare.sh
#                                           # forwarding: an answer nobody stores, one at a
#                                           # time (`ceiling` is the origin asked directly)
#   LARDER_STORE='backend = "redis"
#   redis_url = "redis://127.0.0.1:6379"
#   l1 = false' CONTESTANTS="larder larder_b" benches/compare.sh
#                                           # hits from Redis only (LARDER_RULE adds rule
#                                           # keys: tiers = ["disk"] with a [store.disk];
#                                           # @NAME@ and @OUT@ in either are the
#                                           # contestant's name and the output directory)
#   MODE=rate benches/compare.sh            # hit latency (p50, p99, p99.9) at 50% and 80%
#                                           # of each one's most, from a fixed-rate client
#                                           # (examples/fixed_rate.rs, wrk2's method)
#
# scripts/bench runs the whole set against the last commit in one command.
#
# Installs nginx, varnish and wrk from Debian packages when missing; builds larder in
# release mode; runs `wrk -t1 -c64 --latency` against each contestant in alternating
# rounds (A B C D, A B C D, ...) for 1 KiB and 16 KiB hits, with and without
# `Accept-Encoding: gzip`. Prints requests/s (median, min-max), p50, p99, server CPU per
# request (utime+stime from /proc over the run / requests) and the ratios per round.
# Stops only the processes it started.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
WORKERS=${WORKERS:-1}          # server worker processes/threads (wrk takes the other core)
BASE_PORT=${BASE_PORT:-18080}
OUT=${OUT:-target/compare}

need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v varnishd >/dev/null || [ -x /usr/sbin/varnishd ] || need+=(varnish)
command -v wrk >/dev/null || need+=(wrk)
command -v python3 >/dev/null || need+=(python3)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
VARNISHD=$(command -v varnishd || echo /usr/sbin/varnishd)

cargo build --release --quiet --bin larder --example fixed_rate
LARDER=target/release/larder
MODE=${MODE:-throughput}

rm -rf "$OUT"; mkdir -p "$OUT/www" "$OUT/tmp"
OUT=$(cd "$OUT" && pwd)
ORIGIN_PORT=$BASE_PORT
CEIL_PORT=$((BASE_PORT + 1))
NGX_PORT=$((BASE_PORT + 2))
VARNISH_PORT=$((BASE_PORT + 3))
LARDER_PORT=$((BASE_PORT + 4))
LARDER_ADMIN=$((BASE_PORT + 5))
LARDER_B_PORT=$((BASE_PORT + 6))
LARDER_B_ADMIN=$((BASE_PORT + 7))
LARDER_B=${LARDER_B:-}
FILES=${FILES:-1k.json 16k.json}
ENCODINGS=${ENCODINGS:-identity gzip}

# The files: JSON-like text, with pre-compressed .gz copies so no contestant (nor the
# origin) compresses per request.
python3 - "$OUT/www" <<'PY' 2>/dev/null || {
import sys, gzip, os
d = sys.argv[1]
for name, n in (("1k.json", 1024), ("16k.json", 16384)):
    s = ""
    i = 0
    while len(s) < n:
        s += '{"id":%d,"name":"item %d","tags":["a","b"]},' % (i, i)
        i += 1
    data = s[:n].encode()
    open(os.path.join(d, name), "wb").write(data)
    with gzip.open(os.path.join(d, name + ".gz"), "wb", compresslevel=6) as f:
        f.write(data)
PY
  for spec in 1k.json:1024 16k.json:16384; do
    f=${spec%%:*}; n=${spec##*:}
    yes '{"id":1,"name":"item","tags":["a","b"]},' | head -c "$n" > "$OUT/www/$f"
    gzip -6 -k -f "$OUT/www/$f"
  done
}

pids_of() { # a contestant's processes: its main pid and all descendants
  local p=$1
  echo "$p"
  for c in $(pgrep -P "$p" 2>/dev/null); do pids_of "$c"; done
}

cpu_ticks() { # summed utime+stime (clock ticks) of the given pids
  local t=0
  for p in "$@"; do
    if [ -r "/proc/$p/stat" ]; then
      t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    fi
  done
  echo "$t"
}

started=()
cleanup() {
  for p in "${started[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$OUT/tmp/varnish.pid" ] && kill "$(cat "$OUT/tmp/varnish.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

nginx_conf() { # $1 name, $2 port, $3 server body
  cat > "$OUT/$1.conf" <<EOF
worker_processes $WORKERS;
daemon off;
pid $OUT/tmp/$1.pid;
error_log $OUT/tmp/$1.error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_requests 1000000;
  client_body_temp_path $OUT/tmp/$1-body;
  proxy_temp_path $OUT/tmp/$1-proxy;
  fastcgi_temp_path $OUT/tmp/$1-fcgi;
  uwsgi_temp_path $OUT/tmp/$1-uwsgi;
  scgi_temp_path $OUT/tmp/$1-scgi;
  types { application/json json; }
  $3
}
EOF
}

nginx_conf origin "$ORIGIN_PORT" "server { listen 127.0.0.1:$ORIGIN_PORT; root $OUT/www; gzip_static on; gzip_vary on; location / { add_header Cache-Control \"public, max-age=3600\"; } location /nostore/ { alias $OUT/www/; add_header Cache-Control \"no-store\"; } }"
nginx_conf ceiling "$CEIL_PORT" "server { listen 127.0.0.1:$CEIL_PORT; root $OUT/www; gzip_static on; gzip_vary on; location / { add_header Cache-Control \"public, max-age=3600\"; } location /nostore/ { alias $OUT/www/; add_header Cache-Control \"no-store\"; } }"
nginx_conf proxycache "$NGX_PORT" "proxy_cache_path $OUT/tmp/ngx-cache levels=1:2 keys_zone=c:64m max_size=1g inactive=1h use_temp_path=off;
  upstream origin { server 127.0.0.1:$ORIGIN_PORT; keepalive 64; }
  server { listen 127.0.0.1:$NGX_PORT;
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection \"\";
      proxy_cache c; proxy_cache_lock on; proxy_cache_valid 200 1h; add_header X-Cache \$upstream_cache_status; } }"

cat > "$OUT/varnish.vcl" <<EOF
vcl 4.1;
backend origin { .host = "127.0.0.1"; .port = "$ORIGIN_PORT"; }
sub vcl_backend_response {
  if (beresp.http.Cache-Control ~ "no-store") { set beresp.uncacheable = true; return (deliver); }
  set beresp.ttl = 1h;
}
EOF

LARDER_STORE=${LARDER_STORE:-'memory_max = "256MiB"'}
LARDER_RULE=${LARDER_RULE:-}
cat > "$OUT/larder.toml" <<EOF
[proxy]
listen = "127.0.0.1:$LARDER_PORT"
upstream = "http://127.0.0.1:$ORIGIN_PORT"
workers = $WORKERS
[admin]
listen = "127.0.0.1:$LARDER_ADMIN"
[log]
access = false           # like the others: nginx runs with access_log off
[store]
$LARDER_STORE
[[rule]]
name = "files"
path = "/{file}"
ttl = "1h"
$LARDER_RULE
EOF

sed -e "s/127.0.0.1:$LARDER_PORT/127.0.0.1:$LARDER_B_PORT/" -e "s/127.0.0.1:$LARDER_ADMIN/127.0.0.1:$LARDER_B_ADMIN/" \
  -e "s|@NAME@|larder_b|g" -e "s|@OUT@|$OUT|g" "$OUT/larder.toml" > "$OUT/larder_b.toml"
sed -i -e "s|@NAME@|larder|g" -e "s|@OUT@|$OUT|g" "$OUT/larder.toml"

for n in origin ceiling proxycache; do
  "$NGINX" -c "$OUT/$n.conf" -p "$OUT/tmp" -e "$OUT/tmp/$n.error.log" &
  started+=($!)
  eval "PID_$n=$!"
done
# Varnish: one worker pool sized like the others where it can be; -F keeps it in front.
"$VARNISHD" -F -a "127.0.0.1:$VARNISH_PORT" -f "$OUT/varnish.vcl" -s malloc,256m \
  -n "$OUT/tmp/varnish" -P "$OUT/tmp/varnish.pid" -p thread_pools=1 -p thread_pool_min=$((CONNS + 16)) \
  >"$OUT/tmp/varnish.log" 2>&1 &
started+=($!); PID_varnish=$!
RUST_LOG=warn "$LARDER" serve --config "$OUT/larder.toml" 2>"$OUT/tmp/larder.log" &
started+=($!); PID_larder=$!
PID_larder_b=0
if [ -n "$LARDER_B" ]; then
  RUST_LOG=warn "$LARDER_B" serve --config "$OUT/larder_b.toml" 2>"$OUT/tmp/larder_b.log" &
  started+=($!); PID_larder_b=$!
fi

wait_port() {
  for _ in $(seq 200); do
    curl -s -o /dev/null "http://127.0.0.1:$1/1k.json" && return 0
    sleep 0.05
  done
  echo "nothing answers on port $1" >&2; exit 1
}
declare -A PORT=([ceiling]=$CEIL_PORT [nginx]=$NGX_PORT [varnish]=$VARNISH_PORT [larder]=$LARDER_PORT [larder_b]=$LARDER_B_PORT)
declare -A MAINPID=([ceiling]=$PID_ceiling [nginx]=$PID_proxycache [varnish]=$PID_varnish [larder]=$PID_larder [larder_b]=$PID_larder_b)
read -r -a CONTESTANTS <<< "${CONTESTANTS:-larder nginx varnish ceiling}"
[ -n "$LARDER_B" ] && [[ ! " ${CONTESTANTS[*]} " =~ " larder_b " ]] && CONTESTANTS+=(larder_b)
for p in $ORIGIN_PORT; do wait_port "$p"; done
for c in "${CONTESTANTS[@]}"; do wait_port "${PORT[$c]}"; done

# Warm every cache for every variant.
for c in "${CONTESTANTS[@]}"; do
  for f in $FILES; do
    for _ in 1 2 3; do
      curl -s -o /dev/null "http://127.0.0.1:${PORT[$c]}/$f"
      curl -s -o /dev/null -H 'Accept-Encoding: gzip' "http://127.0.0.1:${PORT[$c]}/$f"
    done
  done
done

results="$OUT/results.tsv"
: > "$results"
to_us() { # wrk latency (e.g. 812.00us, 1.20ms, 2.01s) to microseconds
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else if (v ~ /s$/) print n * 1000000; else print n }'
}
run() { # contestant, file, encoding label, round
  local c=$1 f=$2 enc=$3 round=$4 hdr=()
  [ "$enc" = gzip ] && hdr=(-H 'Accept-Encoding: gzip')
  local pids; pids=$(pids_of "${MAINPID[$c]}")
  local t0; t0=$(cpu_ticks $pids)
  local out; out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "${hdr[@]}" "http://127.0.0.1:${PORT[$c]}/$f")
  local t1; t1=$(cpu_ticks $pids)
  local rps; rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  local total; total=$(awk '/requests in/ {print $1}' <<<"$out")
  local p50; p50=$(to_us "$(awk '$1 == "50%" {print $2}' <<<"$out")")
  local p99; p99=$(to_us "$(awk '$1 == "99%" {print $2}' <<<"$out")")
  local errs; errs=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
  local hz; hz=$(getconf CLK_TCK)
  local cpu_us; cpu_us=$(awk -v d=$((t1 - t0)) -v n="$total" -v hz="$hz" 'BEGIN { printf "%.2f", n ? d / hz * 1e6 / n : 0 }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$f" "$enc" "$round" "$c" "$rps" "$p50" "$p99" "$cpu_us" "$errs" >> "$results"
  printf '  %-8s %-9s %-8s round %s: %10s req/s  p50 %7sus  p99 %7sus  cpu/req %6sus %s\n' "$c" "$f" "$enc" "$round" "$rps" "$p50" "$p99" "$cpu_us" "$errs" >&2
}

# MODE=rate: each contestant's most (wrk), then a fixed-rate client at 50% and 80% of it.
run_rate() { # contestant, file
  local c=$1 f=$2
  local most; most=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:${PORT[$c]}/$f" | awk '/^Requests\/sec/ {printf "%d", $2}')
  for share in 50 80; do
    local rate=$((most * share / 100))
    local out; out=$(target/release/examples/fixed_rate "http://127.0.0.1:${PORT[$c]}/$f" "$rate" "$DURATION" 32)
    printf '%s\t%s\t%s\t%s\t%s\n' "$f" "$c" "$most" "$share" "$out" >> "$OUT/rate.tsv"
    printf '  %-8s %-9s most %7s req/s, at %s%%: %s\n' "$c" "$f" "$most" "$share" "$out" >&2
  done
}
if [ "$MODE" = rate ]; then
  : > "$OUT/rate.tsv"
  echo "machine: $(nproc) cores, $(uname -r); fixed-rate client, 32 connections, ${DURATION}s per step; $WORKERS server worker(s)" >&2
  for f in $FILES; do for c in "${CONTESTANTS[@]}"; do run_rate "$c" "$f"; done; done
  python3 - "$OUT/rate.tsv" <<'PY'
import sys, json
print("| body | contestant | most req/s | load | p50 µs | p99 µs | p99.9 µs | errors |")
print("|---|---|---|---|---|---|---|---|")
for line in open(sys.argv[1]):
    f, c, most, share, out = line.rstrip("\n").split("\t", 4)
    r = json.loads(out)
    print(f"| {f.split('.')[0]} | {c} | {int(most):,} | {share}% ({r['achieved']:,.0f}/s) | {r['p50_us']} | {r['p99_us']} | {r['p999_us']} | {r['errors']} |")
PY
  exit 0
fi

echo "machine: $(nproc) cores, $(uname -r); wrk -t1 -c$CONNS -d${DURATION}s; $WORKERS server worker(s); $ROUNDS rounds" >&2
for f in $FILES; do
  for enc in $ENCODINGS; do
    for round in $(seq "$ROUNDS"); do
      for c in "${CONTESTANTS[@]}"; do run "$c" "$f" "$enc" "$round"; done
    done
  done
done

python3 - "$results" "$ROUNDS" <<'PY'
import sys, statistics
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
data = {}
for f, enc, rnd, c, rps, p50, p99, cpu, errs in rows:
    data.setdefault((f, enc), {}).setdefault(c, []).append((int(rnd), float(rps), float(p50), float(p99), float(cpu)))
order = ["larder", "larder_b", "nginx", "varnish", "ceiling"]
print("| body | client | contestant | req/s median (min–max) | p50 µs | p99 µs | CPU µs/req | vs ceiling |")
print("|---|---|---|---|---|---|---|---|")
ratios = []
for (f, enc), by in data.items():
    ceil = {r[0]: r[1] for r in by.get("ceiling", [])}
    for c in order:
        if c not in by: continue
        runs = by[c]
        rps = [r[1] for r in runs]
        vs_all = [r[1] / ceil[r[0]] for r in runs if ceil.get(r[0])]
        vs = statistics.median(vs_all) if vs_all else float("nan")
        print(f"| {f.split('.')[0]} | {enc} | {c} | {statistics.median(rps):,.0f} ({min(rps):,.0f}–{max(rps):,.0f}) | "
              f"{statistics.median(r[2] for r in runs):.0f} | {statistics.median(r[3] for r in runs):.0f} | "
              f"{statistics.median(r[4] for r in runs):.1f} | {vs:.2f} |")
    per_round = {}
    for c in ("larder", "nginx", "varnish"):
        for r in by.get(c, []):
            per_round.setdefault(r[0], {})[c] = r[1]
    lv = [v["larder"] / v["varnish"] for v in per_round.values() if "larder" in v and "varnish" in v]
    ln = [v["larder"] / v["nginx"] for v in per_round.values() if "larder" in v and "nginx" in v]
    for r in by.get("larder_b", []):
        per_round.setdefault(r[0], {})["larder_b"] = r[1]
    lb = [v["larder"] / v["larder_b"] for v in per_round.values() if "larder" in v and "larder_b" in v]
    ratios.append((f, enc, lv, ln, lb))
print()
print("| body | client | larder/varnish per round | larder/nginx per round | larder/larder_b per round |")
print("|---|---|---|---|---|")
for f, enc, lv, ln, lb in ratios:
    fmt = lambda xs: ', '.join(f'{x:.2f}' for x in xs) or '-'
    print(f"| {f.split('.')[0]} | {enc} | {fmt(lv)} | {fmt(ln)} | {fmt(lb)} |")
PY
