#!/usr/bin/env bash
# The edge's figures in one run on 127.0.0.1 (one server worker; wrk on the other core):
#
#   1. TLS: keep-alive 1 KiB hits/s over HTTPS against plaintext, larder and nginx
#      proxy_cache side by side (the same certificate, TLS 1.3); then full handshakes per
#      second per core (every request a new connection, `Connection: close`).
#   2. Write policy: a buffered miss with a slow Redis (a relay adding DELAY_MS to each
#      Redis reply), `write = "back"` against `write = "through"`, one request at a time.
#   3. Inspection: what `/admin/entry`, `/admin/keys` and `/admin/recommendations` cost
#      against a hit, and hit p50/p99 under load with and without inspection running.
#
#   benches/edge.sh                      # 3 rounds x 10 s
#   ROUNDS=1 DURATION=5 benches/edge.sh
#
# Needs nginx, wrk, openssl, redis-server, python3 (installs the Debian packages when
# missing). Stops only what it started.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
BASE=${BASE_PORT:-19080}
DELAY_MS=${DELAY_MS:-5}
OUT=${OUT:-target/edge}

need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v openssl >/dev/null || need+=(openssl)
command -v redis-server >/dev/null || need+=(redis-server)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
cargo build --release --quiet --bin larder
LARDER=target/release/larder

rm -rf "$OUT"; mkdir -p "$OUT/www" "$OUT/tmp"
OUT=$(cd "$OUT" && pwd)
ORIGIN=$BASE; NGX=$((BASE + 1)); NGX_TLS=$((BASE + 2))
PLAIN=$((BASE + 3)); TLS=$((BASE + 4)); ADMIN=$((BASE + 5)); ADMIN_TLS=$((BASE + 6))
REDIS=$((BASE + 7)); RELAY=$((BASE + 8)); WP=$((BASE + 9)); WP_ADMIN=$((BASE + 10))
TOKEN=bench-token

head -c 1024 /dev/zero | tr '\0' 'x' > "$OUT/www/1k.json"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$OUT/key.pem" -out "$OUT/cert.pem" 2>/dev/null

started=()
cleanup() {
  for p in "${started[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

cpu_ticks() { # utime+stime of a process and its children (nginx's worker)
  local t=0 p
  for p in "$1" $(pgrep -P "$1" 2>/dev/null); do
    [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$t"
}
hz=$(getconf CLK_TCK)

cat > "$OUT/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $OUT/tmp/nginx.pid;
error_log $OUT/tmp/nginx.log warn;
events { worker_connections 4096; }
http {
  access_log off; sendfile on; tcp_nodelay on; keepalive_requests 1000000;
  client_body_temp_path $OUT/tmp/b; proxy_temp_path $OUT/tmp/p; fastcgi_temp_path $OUT/tmp/f;
  uwsgi_temp_path $OUT/tmp/u; scgi_temp_path $OUT/tmp/s;
  proxy_cache_path $OUT/tmp/cache keys_zone=c:16m;
  ssl_certificate $OUT/cert.pem; ssl_certificate_key $OUT/key.pem;
  ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:S:10m;
  server { listen 127.0.0.1:$ORIGIN; root $OUT/www;
    location / { add_header Cache-Control "public, max-age=3600"; } }
  server { listen 127.0.0.1:$NGX; listen 127.0.0.1:$NGX_TLS ssl;
    location / { proxy_pass http://127.0.0.1:$ORIGIN; proxy_cache c; proxy_cache_valid 200 1h; } }
}
EOF
"$NGINX" -c "$OUT/nginx.conf" -p "$OUT/tmp" -e "$OUT/tmp/nginx.log" & started+=($!)

larder_conf() { # $1 name, $2 port, $3 admin port, $4 extra [proxy] lines, $5 rest
  cat > "$OUT/$1.toml" <<EOF
[proxy]
listen = "127.0.0.1:$2"
upstream = "http://127.0.0.1:$ORIGIN"
workers = 1
$4
[admin]
listen = "127.0.0.1:$3"
[log]
access = false
$5
EOF
}
larder_conf plain "$PLAIN" "$ADMIN" "" '[[rule]]
name = "files"
path = "/{file}"
ttl = "1h"'
larder_conf tls "$TLS" "$ADMIN_TLS" "tls_cert = \"$OUT/cert.pem\"
tls_key = \"$OUT/key.pem\"" '[[rule]]
name = "files"
path = "/{file}"
ttl = "1h"'
for n in plain tls; do
  LARDER_ADMIN_TOKEN=$TOKEN RUST_LOG=warn "$LARDER" serve --config "$OUT/$n.toml" 2>"$OUT/tmp/$n.log" &
  started+=($!); eval "PID_$n=$!"
done
sleep 1
NGX_PID=$(cat "$OUT/tmp/nginx.pid")
# Warm every cache.
for u in "http://127.0.0.1:$PLAIN" "https://127.0.0.1:$TLS" "http://127.0.0.1:$NGX" "https://127.0.0.1:$NGX_TLS"; do
  curl -sk -o /dev/null "$u/1k.json"; curl -sk -o /dev/null "$u/1k.json"
done

run() { # $1 label, $2 pid, $3 url, extra wrk args...: "label req/s cpu_us_per_req"
  local label=$1 pid=$2 url=$3; shift 3
  local before after out rps n
  before=$(cpu_ticks "$pid")
  out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" "$@" "$url" 2>&1)
  after=$(cpu_ticks "$pid")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  awk -v l="$label" -v r="$rps" -v n="$n" -v t=$((after - before)) -v hz="$hz" \
    'BEGIN { printf "%-22s %10.0f req/s %8.1f us CPU/req %10.0f per CPU-second\n", l, r, t / hz * 1e6 / n, n / (t / hz) }'
}

echo "== TLS: keep-alive 1 KiB hits (wrk -t1 -c$CONNS, one worker), $ROUNDS round(s) x ${DURATION}s"
for r in $(seq 1 "$ROUNDS"); do
  run "larder http" "$PID_plain" "http://127.0.0.1:$PLAIN/1k.json"
  run "larder https" "$PID_tls" "https://127.0.0.1:$TLS/1k.json"
  run "nginx http" "$NGX_PID" "http://127.0.0.1:$NGX/1k.json"
  run "nginx https" "$NGX_PID" "https://127.0.0.1:$NGX_TLS/1k.json"
done
echo "== TLS: full handshakes (Connection: close: one request per connection)"
for r in $(seq 1 "$ROUNDS"); do
  run "larder handshakes" "$PID_tls" "https://127.0.0.1:$TLS/1k.json" -H "Connection: close"
  run "nginx handshakes" "$NGX_PID" "https://127.0.0.1:$NGX_TLS/1k.json" -H "Connection: close"
done

echo "== Write policy: buffered misses, Redis replies delayed ${DELAY_MS} ms"
redis-server --port "$REDIS" --bind 127.0.0.1 --save "" --appendonly no --dir "$OUT/tmp" >/dev/null &
started+=($!)
python3 - "$RELAY" "$REDIS" "$DELAY_MS" <<'PY' &
import asyncio, sys
listen, target, delay = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]) / 1000
async def pipe(r, w, slow):
    try:
        while data := await r.read(65536):
            if slow:
                await asyncio.sleep(delay)
            w.write(data); await w.drain()
    except Exception:
        pass
    w.close()
async def conn(cr, cw):
    sr, sw = await asyncio.open_connection("127.0.0.1", target)
    await asyncio.gather(pipe(cr, sw, False), pipe(sr, cw, True))
async def main():
    s = await asyncio.start_server(conn, "127.0.0.1", listen)
    async with s: await s.serve_forever()
asyncio.run(main())
PY
started+=($!)
sleep 1
larder_conf wp "$WP" "$WP_ADMIN" "" "[store]
backend = \"redis\"
redis_url = \"redis://127.0.0.1:$RELAY/0\"
redis_timeout = \"2s\"
[[rule]]
name = \"through\"
path = \"/through/{id}\"
ttl = \"1h\"
write = \"through\"
[[rule]]
name = \"back\"
path = \"/back/{id}\"
ttl = \"1h\"
write = \"back\""
mkdir -p "$OUT/www/through" "$OUT/www/back"
for i in $(seq 1 400); do cp "$OUT/www/1k.json" "$OUT/www/through/$i"; cp "$OUT/www/1k.json" "$OUT/www/back/$i"; done
LARDER_ADMIN_TOKEN=$TOKEN RUST_LOG=warn "$LARDER" serve --config "$OUT/wp.toml" 2>"$OUT/tmp/wp.log" &
started+=($!)
sleep 2
misses() { # $1 rule, $2 first id, $3 count: mean and p50 of time_total in ms
  for i in $(seq "$2" $(($2 + $3 - 1))); do
    curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$WP/$1/$i"
  done | sort -n | awk '{ a[NR] = $1 * 1000; s += $1 * 1000 } END { printf "%-8s mean %6.2f ms  p50 %6.2f ms  (%d misses)\n", "'"$1"'", s / NR, a[int(NR / 2) + 1], NR }'
}
per=$((200 / ROUNDS))
for r in $(seq 1 "$ROUNDS"); do
  misses through $((1 + (r - 1) * per)) "$per"
  misses back $((1 + (r - 1) * per)) "$per"
done

echo "== Inspection: admin calls against a hit (wrk -c4, server CPU per call)"
auth="Authorization: Bearer $TOKEN"
for i in $(seq 1 50); do curl -s -o /dev/null "http://127.0.0.1:$PLAIN/1k.json?i=$i"; done
for r in $(seq 1 "$ROUNDS"); do
  CONNS=4 run "hit" "$PID_plain" "http://127.0.0.1:$PLAIN/1k.json"
  CONNS=4 run "/admin/entry" "$PID_plain" "http://127.0.0.1:$ADMIN/admin/entry?url=/1k.json" -H "$auth"
  CONNS=4 run "/admin/keys?limit=100" "$PID_plain" "http://127.0.0.1:$ADMIN/admin/keys?limit=100" -H "$auth"
  CONNS=4 run "/admin/recommendations" "$PID_plain" "http://127.0.0.1:$ADMIN/admin/recommendations" -H "$auth"
done

echo "== Inspection under load: hit p50/p99 (wrk -c$CONNS) without and with inspection running"
for r in $(seq 1 "$ROUNDS"); do
  wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$PLAIN/1k.json" \
    | awk '/^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Requests\/sec/ {r=$2} END {printf "without  %8.0f req/s  p50 %s  p99 %s\n", r, p50, p99}'
  ( end=$((SECONDS + DURATION)); while [ $SECONDS -lt $end ]; do
      curl -s -o /dev/null -H "$auth" "http://127.0.0.1:$ADMIN/admin/entry?url=/1k.json"
      curl -s -o /dev/null -H "$auth" "http://127.0.0.1:$ADMIN/admin/keys?limit=100"
    done ) &
  insp=$!
  wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$PLAIN/1k.json" \
    | awk '/^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Requests\/sec/ {r=$2} END {printf "with     %8.0f req/s  p50 %s  p99 %s\n", r, p50, p99}'
  wait "$insp" 2>/dev/null || true
done
