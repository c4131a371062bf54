# What the start scripts of the test servers (localstack/start.sh, versitygw/start.sh) share,
# sourced by them: stop the server, and remove its own temporary folder, whenever the script exits;
# wait until the server answers, then print "ready http://127.0.0.1:PORT" and wait on it.
#   serve_until_ready NAME PID LOG PORT TRIES PAUSE PROBE [ARGS...]
# PROBE is a command that succeeds once the server answers. Uses $own_dir (empty: keep the folder).
serve_until_ready() {
  local name=$1 log=$3 port=$4 tries=$5 pause=$6
  serve_pid=$2
  shift 6
  trap 'kill -TERM "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true; [ -z "$own_dir" ] || rm -rf "$own_dir"' EXIT
  trap 'exit 143' TERM
  trap 'exit 130' INT
  for _ in $(seq 1 "$tries"); do
    if ! kill -0 "$serve_pid" 2>/dev/null; then
      echo "$name exited at start:" >&2
      tail -n 30 "$log" >&2
      exit 1
    fi
    if "$@"; then
      echo "ready http://127.0.0.1:$port"
      wait "$serve_pid"
      exit $?
    fi
    sleep "$pause"
  done
  echo "$name did not answer on 127.0.0.1:$port in time" >&2
  tail -n 30 "$log" >&2
  exit 1
}
