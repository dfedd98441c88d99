#!/usr/bin/env bash
# A tag purge at 10^3 and 10^5 entries (10^6 with FULL=1) across two larder instances on one
# redis-server: entries filled through A and read through B, then the tag purged on A.
# Prints the time A took to acknowledge, and until B served none of a sample of them
# (examples/purge_bench.rs). Needs nginx and redis-server (installed when missing).
#
#   benches/purge.sh
#   FULL=1 benches/purge.sh
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=${BASE_PORT:-19180}
OUT=${OUT:-target/purge}
SIZES=${SIZES:-1000 100000}
[ -n "${FULL:-}" ] && SIZES="$SIZES 1000000"
need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v redis-server >/dev/null || need+=(redis-server)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
cargo build --release --quiet --bin larder --example purge_bench
rm -rf "$OUT"; mkdir -p "$OUT/www" "$OUT/tmp"
OUT=$(cd "$OUT" && pwd)
ORIGIN=$BASE; REDIS=$((BASE + 1)); TOKEN=bench-token

started=()
cleanup() {
  for p in "${started[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

head -c 512 /dev/zero | tr '\0' 'x' > "$OUT/www/item.json"
cat > "$OUT/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $OUT/tmp/nginx.pid;
error_log $OUT/tmp/nginx.log warn;
events { worker_connections 4096; }
http {
  access_log off; keepalive_requests 1000000;
  client_body_temp_path $OUT/tmp/b; proxy_temp_path $OUT/tmp/p; fastcgi_temp_path $OUT/tmp/f;
  uwsgi_temp_path $OUT/tmp/u; scgi_temp_path $OUT/tmp/s;
  server { listen 127.0.0.1:$ORIGIN; root $OUT/www;
    location / { try_files /item.json =404; add_header Cache-Control "public, max-age=3600"; } }
}
EOF
"$NGINX" -c "$OUT/nginx.conf" -p "$OUT/tmp" -e "$OUT/tmp/nginx.log" & started+=($!)
redis-server --port "$REDIS" --bind 127.0.0.1 --save "" --appendonly no --dir "$OUT/tmp" \
  --maxmemory 4gb --maxmemory-policy allkeys-lru >/dev/null & started+=($!)
sleep 1

for who in a b; do
  port=$((BASE + 10)); [ "$who" = b ] && port=$((BASE + 20))
  cat > "$OUT/$who.toml" <<EOF
[proxy]
listen = "127.0.0.1:$port"
upstream = "http://127.0.0.1:$ORIGIN"
[admin]
listen = "127.0.0.1:$((port + 1))"
[log]
access = false
[store]
memory_max = "2GiB"
backend = "redis"
redis_url = "redis://127.0.0.1:$REDIS/0"
[[rule]]
name = "items"
path = "/items/{size}/{id}"
ttl = "1h"
tags = ["big:{size}"]
EOF
  LARDER_ADMIN_TOKEN=$TOKEN LARDER_USER_SECRET=bench RUST_LOG=warn \
    target/release/larder serve --config "$OUT/$who.toml" 2>"$OUT/tmp/$who.log" &
  started+=($!)
done
sleep 2

echo "| entries under the tag | fill through A | purge acknowledged by A | B serves none of them |"
echo "|---|---|---|---|"
for n in $SIZES; do
  out=$(target/release/examples/purge_bench "http://127.0.0.1:$((BASE + 10))" \
    "http://127.0.0.1:$((BASE + 20))" "http://127.0.0.1:$((BASE + 11))" "$TOKEN" \
    "/items/$n/" "big:$n" "$n")
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("| {:,} | {} s | {} ms | {} ms |".format(r["entries"], r["fill_s"], r["ack_ms"], r["consistent_ms"]))' "$out"
done
