#!/usr/bin/env bash
# The test command (README: `npm test`): build, unit tests, the release tests, then the integration
# suite on both local S3 servers (moto and fauxqs), each started and stopped by the harness itself.
# `test/run.sh integ` runs only the integration suite (`release`, `unit`, `e2e` likewise); with
# S3_ENDPOINT set it runs once against that endpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p tsconfig.json
what=${1:-all}
conc=${TEST_CONCURRENCY:-2}
status=0
if [ "$what" = all ] || [ "$what" = unit ]; then
  node --test --test-concurrency="$conc" 'test/unit/**/*.test.ts' 'test/local/**/*.test.ts' 'test/infra/**/*.test.ts' || status=1
fi
# The release (issue 15): the single executables, .debs and npm tarball are built when the sources
# changed since the last build (out/release/manifest.json); the tests then install the .deb into a
# fresh Debian root and run its units (as root), smoke-test the executable and the npm tarball.
if [ "$what" = all ] || [ "$what" = release ]; then
  npx tsc -p release/tsconfig.json || status=1
  node release/build.ts --if-stale || status=1
  node --test --test-concurrency="$conc" 'test/release/**/*.release.test.ts' || status=1
fi
# `fansync demo` embeds its own S3 server, so it runs once, not once per server.
if [ "$what" = all ] || [ "$what" = e2e ]; then
  node --test 'test/e2e/**/*.test.ts' || status=1
fi
if [ "$what" = all ] || [ "$what" = integ ]; then
  # The fault suite (test/integ/faults-*) appends its figures here; the totals are printed at the end.
  export FANSYNC_FIGURES="${TMPDIR:-/tmp}/fansync-figures-$$.ndjson"
  rm -f "$FANSYNC_FIGURES"
  # One seed for the whole run, printed with the figures: FANSYNC_SEED=<n> replays it.
  export FANSYNC_SEED="${FANSYNC_SEED:-$(( (RANDOM << 15 | RANDOM) % 1000000 + 1 ))}"
  if [ -n "${S3_ENDPOINT:-}" ]; then
    node --test --test-concurrency="$conc" 'test/integ/**/*.integ.test.ts' || status=1
  else
    for server in ${FANSYNC_TEST_SERVERS:-moto fauxqs}; do
      echo "=== integration suite on $server ==="
      FANSYNC_TEST_SERVER=$server node --test --test-concurrency="$conc" 'test/integ/**/*.integ.test.ts' || status=1
    done
  fi
  node test/helpers/figures-report.ts "$FANSYNC_FIGURES"
  rm -f "$FANSYNC_FIGURES"
fi
exit $status
