#!/bin/bash
# LocalStack ready hook: create fansync's test buckets once S3 is up. Runs inside the
# LocalStack container, where awslocal points the AWS CLI at the emulator.
set -euo pipefail

for bucket in fansync-primary fansync-us fansync-jp fansync-uk; do
  # Idempotent: a restarted container with persistence keeps its buckets.
  awslocal s3api head-bucket --bucket "$bucket" 2>/dev/null || awslocal s3api create-bucket --bucket "$bucket"
done
# The primary is versioned like the CDK app makes it: manifests then carry VersionIds.
awslocal s3api put-bucket-versioning --bucket fansync-primary --versioning-configuration Status=Enabled
echo "fansync buckets ready"
