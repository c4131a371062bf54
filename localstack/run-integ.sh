#!/bin/bash
# Run fansync's integration suite against LocalStack or MinIO:
#   localstack/run-integ.sh localstack [test runner options]   LocalStack as a host process, started
#                                                              here (install.sh, start.sh; no Docker)
#   LOCALSTACK_ENDPOINT=http://127.0.0.1:4566 localstack/run-integ.sh localstack
#                                                              one already running (docker-compose.yml)
#   localstack/run-integ.sh minio                              MinIO from docker-compose.yml
# The credentials below are the emulators' well-known public test values (LocalStack accepts
# any, even "test"/"test"; MinIO's default root user is minioadmin/minioadmin): not real credentials.
# Test runner options (e.g. --test-name-pattern=rollback) go to node's test runner.
set -euo pipefail
cd "$(dirname "$0")/.."

emulator="${1:-}"
case "$emulator" in
  localstack)
    export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
    endpoint="${LOCALSTACK_ENDPOINT:-}"
    ;;
  minio)
    export AWS_ACCESS_KEY_ID=minioadmin AWS_SECRET_ACCESS_KEY=minioadmin
    endpoint="${MINIO_ENDPOINT:-http://127.0.0.1:9000}"
    ;;
  *)
    echo "usage: $0 localstack|minio [test runner options]" >&2
    exit 64
    ;;
esac
shift

export AWS_REGION="${AWS_REGION:-us-east-1}"
# Never let the SDK fall back to other credentials or instance metadata during tests.
unset AWS_PROFILE AWS_SESSION_TOKEN
export AWS_EC2_METADATA_DISABLED=true
export FANSYNC_TEST_SERVER="$emulator"

if [ -z "$endpoint" ]; then
  # LocalStack on this host: installed into a venv outside the clone on first use, started on a
  # free port on 127.0.0.1, stopped when the suite ends. with-server.ts exports S3_ENDPOINT.
  bash localstack/install.sh >/dev/null
  exec node test/helpers/with-server.ts localstack -- npm run test:integ -- "$@"
fi

export S3_ENDPOINT="$endpoint"
# Wait (bounded) for the emulator, so a forgotten `docker compose up` is a clear message.
hostport=${S3_ENDPOINT#http://}
hostport=${hostport%%/*}
for _ in $(seq 1 30); do
  if (exec 3<>"/dev/tcp/${hostport%:*}/${hostport##*:}") 2>/dev/null; then
    exec npm run test:integ -- "$@"
  fi
  sleep 1
done
echo "no $emulator on ${S3_ENDPOINT}; start it with: docker compose -f localstack/docker-compose.yml up -d ${emulator}$([ "$emulator" = minio ] && echo ' minio-init')" >&2
exit 69
