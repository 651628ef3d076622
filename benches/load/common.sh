# Shared by the load scripts (sourced, not run): a scratch dir and the pids to
# end on exit, tool installation, the nginx partner and offergate's config.
# Expects to be sourced from the repository root.

HERE=benches/load
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

need() { # need COMMAND DEBIAN_PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "installing $2" >&2
  apt-get update -qq && apt-get install -y -qq "$2" >/dev/null
}

KEY=pk_test_bench_key
OFFER='{"success":true,"offer":{"clickUrl":"https://link.encorekit.com/aB3xY7q2","title":"Free Apple Music for 6 months","description":"Songs & Podcasts","imageUrl":"https://storage.googleapis.com/encore-assets-prod/creatives/primary.png","advertiserName":"Apple Music","perk":"6 months free"}}'
PATH_=/encore/publisher/sdk/v1/offers/message
BESITOS_PATH=/data/messages/bench/upcoming-goals
PAGE='{"current_page":1,"data":[{"subscriber_id":"LaQ1VYb5ANTAny25Ig","game":"Merge Island","level":"level 1079","level_description":"Reach Level 15","hours":3,"currency":"coins","reward":"40 coins","message":"You have 3 hours left to reach level 1079 of Merge Island and earn 40 coins."}],"first_page_url":"http://besitos-service.test/data/messages/bench/upcoming-goals?page=1","from":1,"next_page_url":null,"path":"http://besitos-service.test/data/messages/bench/upcoming-goals","per_page":"1","prev_page_url":null,"to":1}'

nginx_conf() { # name body-of-http-block [worker-processes]
  mkdir -p "$WORK/$1"
  cat > "$WORK/$1/nginx.conf" <<CONF
worker_processes ${3:-1};
pid $WORK/$1/nginx.pid;
error_log $WORK/$1/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/$1; proxy_temp_path $WORK/$1;
  fastcgi_temp_path $WORK/$1; uwsgi_temp_path $WORK/$1; scgi_temp_path $WORK/$1;
  keepalive_requests 1000000;
  $2
}
CONF
}
start_nginx() { # name cpus
  taskset -c "$2" nginx -p "$WORK/$1" -c "$WORK/$1/nginx.conf" -g 'daemon off;' &
  PIDS+=($!)
}
# wait_port PORT [PID]: until PORT accepts (15 s at most); with PID, stop early
# if that process has died.
wait_port() {
  for _ in $(seq 300); do
    if [ -n "${2:-}" ] && ! kill -0 "$2" 2>/dev/null; then echo "the server for port $1 died" >&2; return 1; fi
    (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0
    sleep 0.05
  done
  echo "port $1 never opened" >&2
  return 1
}

# The partner: nginx answering Encore's documented 200 and a Besitos page,
# checking the credentials. With a certificate and key, over TLS.
partner_block() { # port [cert key]
  local tls=""
  [ -n "${2:-}" ] && tls="ssl; ssl_certificate $2; ssl_certificate_key $3; keepalive_timeout 60s"
  echo "server { listen 127.0.0.1:$1 $tls; default_type application/json;
    location = $PATH_ { if (\$http_x_api_key != \"$KEY\") { return 401; } return 200 '$OFFER'; }
    location = $BESITOS_PATH { if (\$http_authorization != \"Bearer $KEY\") { return 401; } return 200 '$PAGE'; } }"
}

# offergate in front of the partner with its shipped defaults, but the rate
# limits out of the way, the key in BENCH_ENCORE_KEY (set it to $KEY).
# RATE_LIMITS=false turns the limit layers off and OG_EXTRA is appended (TOML
# tables): how callgrind.sh prices each feature.
og_config() { # listen admin partner-port [scheme]
  cat <<CONF
[server]
listen = "127.0.0.1:$1"
admin_listen = "127.0.0.1:$2"
[log]
level = "warn"
access_log = false
[encore]
base_url = "${4:-http}://127.0.0.1:$3"
api_key_env = "BENCH_ENCORE_KEY"
chat_id_key_env = "BENCH_ENCORE_KEY"
[encore.rate_limit]
enabled = ${RATE_LIMITS:-true}
partner_per_second = 1000000
partner_burst = 1000000
client_per_second = 1000000
client_burst = 1000000
[besitos]
base_url = "${4:-http}://127.0.0.1:$3"
[besitos.rate_limit]
enabled = ${RATE_LIMITS:-true}
partner_per_second = 1000000
partner_burst = 1000000
client_per_second = 1000000
client_burst = 1000000
[[besitos.partners]]
id = "bench"
token_env = "BENCH_ENCORE_KEY"
${OG_EXTRA:-}
CONF
}
