#!/bin/bash
# Run fansync's integration suite against a local S3 emulator started from docker-compose.yml:
#   localstack/run-integ.sh localstack|minio [extra args for the test runner]
# The credentials below are the emulators' well-known public test values (LocalStack accepts
# "test"/"test", MinIO's default root user is minioadmin/minioadmin): not real credentials.
set -euo pipefail

emulator="${1:-}"
case "$emulator" in
  localstack)
    port=4566
    export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
    ;;
  minio)
    port=9000
    export AWS_ACCESS_KEY_ID=minioadmin AWS_SECRET_ACCESS_KEY=minioadmin
    ;;
  *)
    echo "usage: $0 localstack|minio [test runner args]" >&2
    exit 64
    ;;
esac
shift

export S3_ENDPOINT="http://127.0.0.1:${port}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
# Never let the SDK fall back to other credentials or instance metadata during tests.
unset AWS_PROFILE AWS_SESSION_TOKEN
export AWS_EC2_METADATA_DISABLED=true

# Wait (bounded) for the emulator, so a forgotten `docker compose up` is a clear message.
for _ in $(seq 1 30); do
  if (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null; then
    cd "$(dirname "$0")/.."
    exec npm run test:integ -- "$@"
  fi
  sleep 1
done
echo "no $emulator on ${S3_ENDPOINT}; start it with: docker compose -f localstack/docker-compose.yml up -d ${emulator}$([ "$emulator" = minio ] && echo ' minio-init')" >&2
exit 69
