#!/usr/bin/env bash
# Checks the Prometheus rules in monitoring/ with Debian's promtool, the tool a Prometheus
# server's operator would use before loading them:
#
#   scripts/check-alerts.sh
#
# 1. `promtool check rules` accepts monitoring/rt-cleanup.rules.yml (syntax, templates, lint).
# 2. `promtool test rules` passes monitoring/rt-cleanup.rules.test.yml, which shows every alert
#    firing on synthetic series and staying quiet where it should.
# 3. Every rt_cleanup_* series the rules read is one that src/metrics.rs writes, so that a
#    renamed metric cannot leave an alert silently watching nothing.
#
# As root on a machine without promtool (a fresh Debian 12 CI machine), it installs Debian's
# prometheus package, which ships it.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'check-alerts: %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

"$(dirname "$0")/ensure-packages.sh" promtool=prometheus
log "$(promtool --version 2>&1 | head -n 1)"

rules=monitoring/rt-cleanup.rules.yml
tests=monitoring/rt-cleanup.rules.test.yml

log "promtool check rules $rules"
promtool check rules "$rules"

log "promtool test rules $tests"
# promtool resolves the test file's rule_files relative to the test file's directory.
promtool test rules "$tests"

# Series names outside comments, leaving out the recording rules' own names (level:name:op).
mapfile -t used < <(grep -v '^[[:space:]]*#' "$rules" |
  grep -oP '(?<![:\w])rt_cleanup_[a-z_]+\b(?!:)' | sort -u)
[ ${#used[@]} -ge 5 ] || die "found only ${#used[@]} rt_cleanup_* series in $rules: ${used[*]}"
missing=()
for series in "${used[@]}"; do
  grep -qF "\"$series\"" src/metrics.rs || missing+=("$series")
done
[ ${#missing[@]} -eq 0 ] ||
  die "$rules reads series that src/metrics.rs never writes: ${missing[*]}"
log "the rules read ${#used[@]} series, all written by src/metrics.rs: ${used[*]}"
log "OK"
