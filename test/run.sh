#!/usr/bin/env bash
# The test command (README: `npm test`): build, unit tests, the release tests, then the integration
# suite on each local S3 server in turn (moto, LocalStack, versitygw, fauxqs), each started and
# stopped by the harness, with the counts and time per server at the end. Every integration file
# has a tier (test/helpers/integ-tiers.ts): the reference server (moto) runs them all, the others
# the protocol edges only (docs/testing.md, tiers). `test/run.sh integ` runs
# only the integration suite (`unit`, `sim`, `release`, `e2e` likewise); with S3_ENDPOINT set it runs once
# against that endpoint.
#   FANSYNC_TEST_SERVERS="moto versitygw:versioned"  choose servers; ":versioned" versions every bucket
#   TEST_CONCURRENCY=2                                 test files run at once (default 2)
# Arguments after the first are options for node's test runner, e.g. --test-name-pattern=rollback.
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p tsconfig.json
what=${1:-all}
shift || true
extra=("$@")
conc=${TEST_CONCURRENCY:-2}
status=0
logs=$(mktemp -d "${TMPDIR:-/tmp}/fansync-test-logs.XXXXXX")
sim_pid=""
# A run that stops early also stops the simulation it started in the background.
trap '[ -z "$sim_pid" ] || { pkill -TERM -P "$sim_pid"; kill "$sim_pid"; } 2>/dev/null; rm -rf "$logs"' EXIT
summary=()
total_pass=0 total_fail=0 total_skip=0

# Run a node --test command, its output also kept in a log; add its counts to the summary.
run_tests() {
  local name=$1
  shift
  local log="$logs/$(echo "$name" | tr -c 'a-z0-9\n' '-').log" start=$SECONDS rc=0
  "$@" 2>&1 | tee "$log" || rc=1
  [ $rc -eq 0 ] || status=1
  local n pass fail skip
  count() { sed -n "s/^ℹ $1 \([0-9]*\)$/\1/p" "$log" | tail -n 1; }
  n=$(count tests) pass=$(count pass) fail=$(count fail) skip=$(count skipped)
  total_pass=$((total_pass + ${pass:-0})) total_fail=$((total_fail + ${fail:-0})) total_skip=$((total_skip + ${skip:-0}))
  # A run that died before its summary (a server that did not start) counts as a failure.
  [ -n "$n" ] || { total_fail=$((total_fail + 1)); fail="? (no summary: exit $rc)"; }
  summary+=("$(printf '%-50s %4s tests, %4s pass, %4s fail, %3s skipped  %4d s' "$name" "${n:-?}" "${pass:-?}" "${fail:-?}" "${skip:-?}" $((SECONDS - start)))")
}

if [ "$what" = all ] || [ "$what" = unit ]; then
  run_tests "unit + local + infra" node --test --test-concurrency="$conc" 'test/unit/**/*.test.ts' 'test/local/**/*.test.ts' 'test/infra/**/*.test.ts'
fi
# The seeded simulation (sim/, issue 26; no server): the self-test first (every planted bug must be
# caught), then 2,000 seeds of the default: every actor class (the adversary too), every server quirk,
# file <-> directory flips (docs/architecture.md). Run alone (`sim`), the seeds go to two processes
# (two took about 0.7 of the time of one on the two cores); with `all` it runs in one, beside the rest.
run_sim() {
  local rc=0
  npx tsc -p sim/tsconfig.json || rc=1
  node sim/run.ts --self-test || rc=1
  node sim/run.ts --seeds "${FANSYNC_SIM_SEEDS:-2000}" --jobs "${1:-1}" || rc=1
  return $rc
}
sim_summary() {
  [ "$1" -eq 0 ] || status=1
  summary+=("$(printf '%-50s %s  %4d s' "simulation (self-test + seeds)${3:-}" "$([ "$1" -eq 0 ] && echo ok || echo FAILED)" "$2")")
}
# The simulation is one CPU job (95% of its CPU time on Node's main thread: one core) with no
# server, network or timing; the stages after it mostly wait (two integration files on moto used
# 35 s of CPU, servers and CLI processes included, in 2.5 min of wall time: docs/testing.md). So with `all` (unless
# FANSYNC_TEST_OVERLAP=0) it runs in the background beside the release build, the release tests,
# and the demo (in two processes), its output kept and printed, with its summary line, before the
# integration suite starts (which runs alone: see finish_sim).
if [ "$what" = all ] && [ "${FANSYNC_TEST_OVERLAP:-1}" = 1 ]; then
  sim_start=$SECONDS
  { rc=0; run_sim 2 || rc=$?; echo $((SECONDS - sim_start)) >"$logs/sim.seconds"; exit $rc; } >"$logs/sim.log" 2>&1 &
  sim_pid=$!
elif [ "$what" = all ] || [ "$what" = sim ]; then
  sim_start=$SECONDS sim_rc=0
  run_sim 2 || sim_rc=1
  sim_summary $sim_rc $((SECONDS - sim_start))
fi
# The release (issue 15): the single executables, .debs and npm tarball are built when the sources
# changed since the last build (out/release/manifest.json), or taken from the build of the same
# sources kept in ~/.cache/fansync-release/builds; the tests then install the .deb into a fresh
# Debian root and run its units (as root), smoke-test the executable and the npm tarball.
if [ "$what" = all ] || [ "$what" = release ]; then
  build_start=$SECONDS build_rc=0
  npx tsc -p release/tsconfig.json || build_rc=1
  node release/build.ts --if-stale || build_rc=1
  [ $build_rc -eq 0 ] || status=1
  summary+=("$(printf '%-50s %s  %4d s' "release build (or its cache)" "$([ $build_rc -eq 0 ] && echo ok || echo FAILED)" $((SECONDS - build_start)))")
  run_tests "release" node --test --test-concurrency="$conc" 'test/release/**/*.release.test.ts'
fi
# `fansync demo` embeds its own S3 server, so it runs once, not once per server.
if [ "$what" = all ] || [ "$what" = e2e ]; then
  run_tests "e2e (demo)" node --test 'test/e2e/**/*.test.ts'
fi
# Wait for the simulation started in the background (if any), print its output and summary line.
finish_sim() {
  [ -n "$sim_pid" ] || return 0
  local sim_rc=0
  wait "$sim_pid" || sim_rc=1
  sim_pid=""
  echo "=== simulation (ran in the background since $sim_start s) ==="
  cat "$logs/sim.log"
  sim_summary $sim_rc "$(cat "$logs/sim.seconds" 2>/dev/null || echo $((SECONDS - sim_start)))" " (in the background)"
}
# The integration suite starts once the simulation is done: its timing-sensitive cases (two writers
# racing for the lease on moto, whose conditional PUT checks and writes without a lock) failed once
# with the simulation busy beside them.
finish_sim
if [ "$what" = all ] || [ "$what" = integ ]; then
  # The fault suite (test/integ/faults-*) appends its figures here; the totals are printed at the end.
  export FANSYNC_FIGURES="$logs/figures.ndjson"
  # One seed for the whole run, printed with the figures: FANSYNC_SEED=<n> replays it.
  export FANSYNC_SEED="${FANSYNC_SEED:-$(( (RANDOM << 15 | RANDOM) % 1000000 + 1 ))}"
  # The files of a tier ("all" or "edge"), from the one list; it fails, naming the file, when a
  # file has no tier, so nothing is left out unseen.
  tier_files() { node test/helpers/integ-tiers.ts files "$1"; }
  all_files=$(tier_files all) || exit 1
  n_all=$(echo "$all_files" | wc -l)
  if [ -n "${S3_ENDPOINT:-}" ]; then
    echo "=== integration suite on ${FANSYNC_TEST_SERVER:-external} at $S3_ENDPOINT (all tiers) ==="
    # shellcheck disable=SC2046 # one file per line, no spaces in the names
    run_tests "${FANSYNC_TEST_SERVER:-external} at $S3_ENDPOINT: all tiers, $n_all files" node --test --test-concurrency="$conc" "${extra[@]}" $all_files
  else
    specs=${FANSYNC_TEST_SERVERS:-moto localstack:versioned versitygw:versioned fauxqs}
    # The engine tier runs on the reference server, or on the first server listed when it is not.
    reference=moto
    case " $specs " in *" moto "* | *" moto:versioned "*) ;; *) reference=${specs%% *} reference=${reference%%:*} ;; esac
    for spec in $specs; do
      server=${spec%%:*}
      versioning=""
      [ "$spec" = "$server:versioned" ] && versioning=all
      if [ "$server" = "$reference" ]; then tier=all files=$all_files; else tier=edge files=$(tier_files edge) || exit 1; fi
      n=$(echo "$files" | wc -l)
      label="$spec: $([ $tier = all ] && echo "all tiers" || echo "edge tier"), $n of $n_all files"
      echo "=== integration suite on $server${versioning:+ (every bucket versioned)}: $label ==="
      integ=(node --test --test-concurrency="$conc" "${extra[@]}" $files)
      case $server in
        # Installed (built) once, before test files start servers two at a time.
        localstack | versitygw) bash "$server/install.sh" >/dev/null ;;
      esac
      if [ "$server" = localstack ]; then
        # One LocalStack for the whole run (it takes seconds to start), reached as S3_ENDPOINT; with
        # SQS and SNS, so the events tests (docs/events.md) run on it too.
        FANSYNC_INTEG_TIER=$tier FANSYNC_LOCALSTACK_SERVICES=${FANSYNC_LOCALSTACK_SERVICES:-s3,sqs,sns} FANSYNC_TEST_VERSIONING=$versioning run_tests "$label" node test/helpers/with-server.ts localstack -- "${integ[@]}"
      else
        FANSYNC_INTEG_TIER=$tier FANSYNC_TEST_SERVER=$server FANSYNC_TEST_VERSIONING=$versioning run_tests "$label" "${integ[@]}"
      fi
    done
  fi
  node test/helpers/figures-report.ts "$FANSYNC_FIGURES"
fi
echo
echo "=== summary ==="
printf '%s\n' "${summary[@]}"
echo "all: $total_pass passed, $total_fail failed, $total_skip skipped"
exit $status
