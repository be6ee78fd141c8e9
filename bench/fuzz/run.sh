#!/usr/bin/env bash
# A long run of the property-based fuzz harnesses (proptest, stable Rust):
# the same tests `cargo test --workspace` runs briefly, with many more cases.
#
#   the MQTT decode path            kumo-broker  codec::fuzz
#   the TLS record layer            kumo-tls-io  record_fuzz
#   REST text: forms, paths, JSON   kumo-bridge  text::fuzz
#   CSR acceptance                  kumo-certs   csr::fuzz
#   rule documents                  kumo-rules   --test it fuzz
#   device payloads, ids, topics    kumo-contract --test payload_fuzz
#
# Usage: bench/fuzz/run.sh                 PROPTEST_CASES=100000 per property
#        PROPTEST_CASES=1000000 TIME_LIMIT=3600 bench/fuzz/run.sh
#        ONLY=codec bench/fuzz/run.sh      (one harness, by the names above' first column word)
# TLS properties run a handshake per case: they get TLS_CASES (PROPTEST_CASES / 50 by default).
# Each harness is bounded by TIME_LIMIT seconds (a hang is a finding: it fails).
# A failure prints proptest's minimal failing input and appends it to the
# harness's proptest-regressions file, which later runs replay first: commit
# it with the fix and a named regression test.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
CASES=${PROPTEST_CASES:-100000}
TLS_CASES=${TLS_CASES:-$(( CASES / 50 > 100 ? CASES / 50 : 100 ))}
TIME_LIMIT=${TIME_LIMIT:-1800}
ONLY=${ONLY:-}
export CARGO_PROFILE_DEV_DEBUG=${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}

harnesses=(
  "codec    $CASES     -p kumo-broker --lib codec::fuzz"
  "tls      $TLS_CASES -p kumo-tls-io --lib record_fuzz"
  "text     $CASES     -p kumo-bridge --lib text::fuzz"
  "csr      $CASES     -p kumo-certs --lib csr::fuzz"
  "rules    $CASES     -p kumo-rules --test it fuzz"
  "payload  $CASES     -p kumo-contract --test payload_fuzz"
)
failed=0
printf '%s  %s cores, load %s\n' "$(date -u +%FT%TZ)" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
for h in "${harnesses[@]}"; do
  read -r name cases args <<<"$h"
  [[ -n $ONLY && $ONLY != "$name" ]] && continue
  # shellcheck disable=SC2086
  cargo test $args --no-run -q 2>/dev/null || cargo test $args --no-run
  start=$SECONDS
  log=$(mktemp)
  # shellcheck disable=SC2086
  if PROPTEST_CASES=$cases timeout "$TIME_LIMIT" cargo test $args -- --test-threads 2 >"$log" 2>&1; then
    status=ok
  else
    status="FAILED (exit $?)"
    failed=1
  fi
  tests=$(grep -cE '^test .* \.\.\. ok$' "$log" || true)
  printf '%-8s %-10s %8s cases/property  %3s properties  %5s s  cargo test %s\n' \
    "$name" "$status" "$cases" "$tests" "$((SECONDS - start))" "$args"
  [[ $status == ok ]] || grep -E 'minimal failing input|panicked at|Test failed' -A12 "$log" | head -40
  rm -f "$log"
done
exit $failed
