#!/bin/sh
# MinIO one-shot (the minio-init service): create fansync's test buckets with mc.
# POSIX sh: the mc image has no bash.
set -eu

mc alias set local "${MINIO_URL:-http://minio:9000}" "${MINIO_ROOT_USER:-minioadmin}" "${MINIO_ROOT_PASSWORD:-minioadmin}"
for bucket in fansync-primary fansync-us fansync-jp fansync-uk; do
  mc mb --ignore-existing "local/$bucket"
done
# The primary is versioned like the CDK app makes it: manifests then carry VersionIds.
mc version enable local/fansync-primary
echo "fansync buckets ready"
