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
