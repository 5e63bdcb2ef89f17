# Shared by the bench scripts (sourced, not run): what they install and the
# proxy they set up.

# Installs from Debian what is missing, given as COMMAND:PACKAGE pairs.
install_missing() {
  local need=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
  done
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
}

# In DIR: a self-signed certificate for localhost, the stand-in upstream
# started on 127.0.0.1:UPSTREAM_PORT, and a proxy.toml for vaultgate on
# 127.0.0.1:LISTEN_PORT with LIMITS (lines for its [limits] table). The
# caller kills the upstream with its other jobs.
#   proxy_setup DIR UPSTREAM_PORT LISTEN_PORT LIMITS
proxy_setup() {
  local dir=$1 upstream=$2 listen=$3 limits=$4
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
  ./target/release/examples/upstream "127.0.0.1:$upstream" >/dev/null 2>&1 &
  cat >"$dir/proxy.toml" <<TOML
listen = "127.0.0.1:$listen"
upstream = "http://127.0.0.1:$upstream"
[tls]
cert = "$dir/cert.pem"
key = "$dir/key.pem"
[limits]
$limits
[log]
level = "warn"
access = "off"
TOML
}

# nginx as Vaultwarden's wiki configures it (2 workers, HTTP/2, buffering
# off, 525M bodies, the upgrade headers), in DIR/nginx.conf, listening on
# 127.0.0.1:LISTEN_PORT in front of 127.0.0.1:UPSTREAM_PORT with DIR's
# certificate; the caller starts and stops it.
#   nginx_setup DIR UPSTREAM_PORT LISTEN_PORT FILE_LIMIT
nginx_setup() {
  local dir=$1 upstream=$2 listen=$3 limit=$4
  cat >"$dir/nginx.conf" <<NGINX
worker_processes 2;
worker_rlimit_nofile $limit;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log warn;
events { worker_connections 50000; }
http {
  access_log off;
  # h2load and wrk do not reconnect: no cap on requests per connection.
  keepalive_requests 100000000;
  upstream vaultwarden-default { server 127.0.0.1:$upstream; keepalive 32; }
  map \$http_upgrade \$connection_upgrade { default upgrade; '' ""; }
  server {
    # Debian 12's nginx 1.22 spells HTTP/2 on the listen line.
    listen 127.0.0.1:$listen ssl http2;
    ssl_certificate $dir/cert.pem;
    ssl_certificate_key $dir/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
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
}

# HAProxy as Vaultwarden's wiki has it (HTTP/2 and HTTP/1.1 in, keep-alive
# and connection reuse to the upstream, WebSocket upgrades passed: timeout
# tunnel), in DIR/haproxy.cfg, with THREADS threads, listening on
# 127.0.0.1:LISTEN_PORT in front of 127.0.0.1:UPSTREAM_PORT with DIR's
# certificate (as DIR/combined.pem); the caller starts and stops it.
#   haproxy_setup DIR UPSTREAM_PORT LISTEN_PORT THREADS MAXCONN
haproxy_setup() {
  local dir=$1 upstream=$2 listen=$3 threads=$4 maxconn=$5
  cat "$dir/cert.pem" "$dir/key.pem" >"$dir/combined.pem"
  cat >"$dir/haproxy.cfg" <<HAPROXY
global
  nbthread $threads
  maxconn $maxconn
  pidfile $dir/haproxy.pid
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout tunnel 1h
  option http-keep-alive
  http-reuse always
frontend vaultwarden
  bind 127.0.0.1:$listen ssl crt $dir/combined.pem alpn h2,http/1.1
  option forwardfor
  http-request set-header X-Real-IP %[src]
  http-request set-header X-Forwarded-Proto https
  default_backend vaultwarden
backend vaultwarden
  server vw 127.0.0.1:$upstream
HAPROXY
}
