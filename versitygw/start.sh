#!/bin/bash
# Start versitygw (posix backend, bucket versioning on) on 127.0.0.1 in the foreground:
#   versitygw/start.sh [PORT] [DIR]
# PORT: default a free port; DIR: where the buckets and their old versions live (default: a temp
# dir, removed on exit). The root user is $ROOT_ACCESS_KEY_ID / $ROOT_SECRET_ACCESS_KEY (default
# test/test: local test values, not real credentials); versitygw checks signatures and the clock,
# and answers an unknown access key with 404 XAdminUserNotFound.
# Prints "ready http://127.0.0.1:PORT" once the server answers; TERM/INT stop it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../test/helpers/serve.sh"
bin=$("$here/install.sh" | tail -n 1)
port=${1:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
dir=${2:-}
own_dir=""
if [ -z "$dir" ]; then
  dir=$(mktemp -d "${TMPDIR:-/tmp}/fansync-versitygw.XXXXXX")
  own_dir=$dir
fi
# Without --versioning-dir no bucket can be versioned.
mkdir -p "$dir/root" "$dir/versions"
ROOT_ACCESS_KEY_ID="${ROOT_ACCESS_KEY_ID:-test}" ROOT_SECRET_ACCESS_KEY="${ROOT_SECRET_ACCESS_KEY:-test}" \
  "$bin" --port "127.0.0.1:$port" --quiet --keep-alive posix --versioning-dir "$dir/versions" "$dir/root" \
  > "$dir/versitygw.log" 2>&1 &
# Ready once it accepts a TCP connection (0.3 s here); 10 s at most.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }
serve_until_ready versitygw $! "$dir/versitygw.log" "$port" 100 0.1 listening
