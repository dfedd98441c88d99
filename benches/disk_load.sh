#!/usr/bin/env bash
# Disk-tier hits against memory hits, 16 KiB bodies, on 127.0.0.1, in the same run:
#   larder_mem   the memory tier holds the whole set;
#   larder_disk  the set lives only on disk (`tiers = ["disk"]`: no memory copy), every hit
#                is a read of the segment file (from the page cache) and a checksum;
#   nginx        nginx proxy_cache (its cache is files on disk too), for scale.
#
#   benches/disk_load.sh                  # 3 rounds x 10 s, 2000 distinct URLs
#   ROUNDS=5 DURATION=15 KEYS=5000 benches/disk_load.sh
#
# Every URL is filled once first; then `wrk -t1 -c64 --latency` asks for random URLs of the
# set (with Accept-Encoding: gzip, so the stored bytes are what is measured) in alternating
# rounds. Prints requests/s and p50/p99 per round and the disk/memory ratio. Stops only the
# processes it started.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
KEYS=${KEYS:-2000}
BASE_PORT=${BASE_PORT:-18180}
OUT=${OUT:-target/disk-load}

need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
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
ORIGIN_PORT=$BASE_PORT
NGX_PORT=$((BASE_PORT + 1))
MEM_PORT=$((BASE_PORT + 2)); MEM_ADMIN=$((BASE_PORT + 3))
DISK_PORT=$((BASE_PORT + 4)); DISK_ADMIN=$((BASE_PORT + 5))

# One 16 KiB JSON body whose payload is random base64 (gzip keeps about 75% of it), so a
# hit reads some 12 KiB from the store, not a few hundred bytes.
{ printf '{"data":"'; head -c 12000 /dev/urandom | base64 -w0 | head -c 16373; printf '"}'; } > "$OUT/www/item.json"
gzip -6 -k -f "$OUT/www/item.json"

started=()
cleanup() {
  for p in "${started[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

cat > "$OUT/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $OUT/tmp/nginx.pid;
error_log $OUT/tmp/nginx.error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_requests 1000000;
  client_body_temp_path $OUT/tmp/body; proxy_temp_path $OUT/tmp/proxy;
  fastcgi_temp_path $OUT/tmp/fcgi; uwsgi_temp_path $OUT/tmp/uwsgi; scgi_temp_path $OUT/tmp/scgi;
  types { application/json json; }
  server { listen 127.0.0.1:$ORIGIN_PORT; root $OUT/www; gzip_static on; gzip_vary on;
    location / { try_files /item.json =404; add_header Cache-Control "public, max-age=3600"; } }
  proxy_cache_path $OUT/tmp/ngx-cache levels=1:2 keys_zone=c:64m max_size=1g inactive=1h use_temp_path=off;
  upstream origin { server 127.0.0.1:$ORIGIN_PORT; keepalive 64; }
  server { listen 127.0.0.1:$NGX_PORT;
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_cache c; proxy_cache_valid 200 1h; } }
}
EOF

larder_conf() { # $1 name, $2 port, $3 admin port, $4 extra store lines, $5 rule lines
  cat > "$OUT/$1.toml" <<EOF
[proxy]
listen = "127.0.0.1:$2"
upstream = "http://127.0.0.1:$ORIGIN_PORT"
workers = 1

[admin]
listen = "127.0.0.1:$3"

[store]
memory_max = "256MiB"
$4

[log]
access = false

[[rule]]
name = "items"
path = "/items/{id}"
ttl = "1h"
$5
EOF
}
larder_conf larder_mem "$MEM_PORT" "$MEM_ADMIN" "" ""
larder_conf larder_disk "$DISK_PORT" "$DISK_ADMIN" "
[store.disk]
path = \"$OUT/tmp/disk\"
max = \"1GiB\"
write = \"back\"" 'tiers = ["disk"]'

"$NGINX" -c "$OUT/nginx.conf" -p "$OUT/tmp" -e "$OUT/tmp/nginx.error.log" & started+=($!)
export LARDER_ADMIN_TOKEN=bench
RUST_LOG=warn "$LARDER" serve --config "$OUT/larder_mem.toml" & started+=($!)
RUST_LOG=warn "$LARDER" serve --config "$OUT/larder_disk.toml" & started+=($!)
for port in $ORIGIN_PORT $NGX_PORT $MEM_PORT $DISK_PORT; do
  for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$port/items/0" && break; sleep 0.1; done
done

# Fill every URL once in each cache.
cat > "$OUT/fill.lua" <<EOF
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/items/" .. (i % $KEYS), { ["Accept-Encoding"] = "gzip" })
end
EOF
cat > "$OUT/random.lua" <<EOF
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/items/" .. math.random(0, $KEYS - 1), { ["Accept-Encoding"] = "gzip" })
end
EOF
for port in $NGX_PORT $MEM_PORT $DISK_PORT; do
  for i in $(seq 0 $((KEYS - 1))); do echo "url = \"http://127.0.0.1:$port/items/$i\""; echo "output = /dev/null"; done > "$OUT/fill-$port.curl"
  curl -s -H "Accept-Encoding: gzip" --parallel --parallel-max 16 -K "$OUT/fill-$port.curl" -w '%{http_code}\n' 2>/dev/null | sort | uniq -c | sed "s/^/  fill $port: /"
done
stats() { curl -s -H "Authorization: Bearer bench" "http://127.0.0.1:$DISK_ADMIN/admin/stats"; }
echo "disk tier after the fill:"
stats | python3 -c 'import json,sys; v=json.load(sys.stdin); print("  ", v.get("disk"))' || true

run() { # $1 name, $2 port -> "rps p50 p99"
  wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$OUT/random.lua" "http://127.0.0.1:$2/" > "$OUT/$1.wrk"
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' "$OUT/$1.wrk")
  p50=$(awk '$1=="50%" {print $2}' "$OUT/$1.wrk")
  p99=$(awk '$1=="99%" {print $2}' "$OUT/$1.wrk")
  echo "$rps $p50 $p99"
}

printf '%-6s %-12s %12s %10s %10s\n' round contestant req/s p50 p99
for r in $(seq "$ROUNDS"); do
  declare -A rps=()
  for c in larder_mem larder_disk nginx; do
    case $c in larder_mem) port=$MEM_PORT;; larder_disk) port=$DISK_PORT;; nginx) port=$NGX_PORT;; esac
    read -r x p50 p99 < <(run "$c" "$port")
    rps[$c]=$x
    printf '%-6s %-12s %12s %10s %10s\n' "$r" "$c" "$x" "$p50" "$p99"
  done
  awk -v d="${rps[larder_disk]}" -v m="${rps[larder_mem]}" -v n="${rps[nginx]}" \
    'BEGIN { printf "       disk/memory %.2f   disk/nginx %.2f\n", d / m, d / n }'
done
stats | python3 -c 'import json,sys; v=json.load(sys.stdin); print("larder_disk: disk-tier hits", v["tiers"].get("disk"), " memory hits", v["tiers"].get("l1"))' || true
