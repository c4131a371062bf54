#!/bin/bash
# Start LocalStack (S3 only; FANSYNC_LOCALSTACK_SERVICES=s3,sqs,sns adds what the events tests need,
# about 50% more start time) on 127.0.0.1 as a host process in the foreground, no Docker:
#   localstack/start.sh [PORT] [DIR]
# PORT: default a free port; DIR: its state (default: a temp dir, removed on exit).
# Installs it first if needed (install.sh). Prints "ready http://127.0.0.1:PORT" once
# /_localstack/health says S3 is up (4-11 s); TERM/INT stop it.
# LocalStack checks no credentials at all: any access key, secret or clock is accepted.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../test/helpers/serve.sh"
python=$("$here/install.sh" | tail -n 1)
port=${1:-$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
dir=${2:-}
own_dir=""
if [ -z "$dir" ]; then
  dir=$(mktemp -d "${TMPDIR:-/tmp}/fansync-localstack.XXXXXX")
  own_dir=$dir
fi
mkdir -p "$dir/volume"
# hypercorn binds the host given in GATEWAY_LISTEN; the default Twisted gateway would listen on
# 0.0.0.0 whatever it says. No DNS server, no certificate download, no analytics, no persistence.
SERVICES=${FANSYNC_LOCALSTACK_SERVICES:-s3} EAGER_SERVICE_LOADING=1 PERSISTENCE=0 \
  GATEWAY_LISTEN="127.0.0.1:$port" LOCALSTACK_HOST="127.0.0.1:$port" GATEWAY_SERVER=hypercorn \
  DNS_ADDRESS=0 FILESYSTEM_ROOT="$dir" LOCALSTACK_VOLUME_DIR="$dir/volume" \
  DISABLE_EVENTS=1 SKIP_SSL_CERT_DOWNLOAD=1 \
  "$python" -m localstack.runtime.main > "$dir/localstack.log" 2>&1 &
# Ready once its health endpoint says S3 is available; 60 s at most.
health="http://127.0.0.1:$port/_localstack/health"
s3_up() {
  "$python" - "$health" <<'PY' 2>/dev/null
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    s3 = json.load(r).get("services", {}).get("s3")
sys.exit(0 if s3 in ("available", "running") else 1)
PY
}
serve_until_ready LocalStack $! "$dir/localstack.log" "$port" 120 0.5 s3_up
