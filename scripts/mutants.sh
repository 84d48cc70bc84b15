#!/usr/bin/env bash
# Mutation testing of the unit tests over the modules that decide results (issue 18, part C):
#
#   scripts/mutants.sh [CARGO-MUTANTS OPTIONS]
#
# cargo-mutants changes the code of src/outcome.rs, src/candidate.rs, src/store/protocol.rs,
# src/job.rs, src/plan.rs and src/config.rs one mutant at a time (a function that returns a
# constant, an operator swapped, a `!` or a match arm deleted), and runs the unit tests
# (`cargo test --lib`) against each: a mutant the tests still pass is a decision no test pins.
# It works in a copy of the tree unless told --in-place. The results go to target/mutants.out/
# (outcomes.json, and missed.txt, caught.txt, timeout.txt, unviable.txt); the exit status is
# cargo-mutants' own: 0 when every mutant was caught, 2 when some were missed, 3 when some timed
# out. docs/fault-suite.md ("Mutation testing") has the last score and every mutant left, two of
# them equivalent, so a run of today exits 3 (or 2).
#
# It is not part of CI: it took 56 minutes for 212 mutants on 2 shared cores (6 of them the
# first build of the copy it works in). It runs one job at a time (`--jobs 1`) and at a lower
# priority (`nice -n 10`), since the cores are shared; more jobs, e.g.
# `scripts/mutants.sh --jobs 2`, are faster on a machine of one's own. Other options are
# passed to cargo-mutants, e.g. `--file src/plan.rs` instead of the six files, `--list`, or
# `--iterate --in-place` to test again, in the checkout itself, only the mutants the last run
# did not catch (do not edit the checkout meanwhile).
#
# cargo-mutants 27.1.0 is installed from crates.io with `cargo install --locked` when missing,
# so that scores stay comparable (another release makes other mutants).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'mutants: %s\n' "$*" >&2; }

version=27.1.0
if [ "$(cargo mutants --version 2>/dev/null)" != "cargo-mutants $version" ]; then
    log "installing cargo-mutants $version (cargo install --locked; a few minutes)"
    cargo install --locked "cargo-mutants@$version"
fi

files=(
    src/outcome.rs
    src/candidate.rs
    src/store/protocol.rs
    src/job.rs
    src/plan.rs
    src/config.rs
)
file_args=()
for file in "${files[@]}"; do
    file_args+=(--file "$file")
done
jobs=(--jobs 1)
for arg in "$@"; do
    case $arg in
        # --file on the command line replaces the six files rather than adding to them.
        --file | --file=* | -f) file_args=() ;;
        # Another --jobs replaces ours; --in-place (mutate the checkout itself, reusing its
        # target/, e.g. with --iterate to test again only what was not caught) runs one job.
        --jobs | --jobs=* | -j | --in-place) jobs=() ;;
    esac
done

# Every wait in the unit tests is bounded (10 s in the worker's), so a mutant that makes a test
# wait fails it well within the 60 s timeout; one that loops forever is a timeout.
log "cargo mutants on ${files[*]}, unit tests only; results in target/mutants.out"
exec nice -n 10 cargo mutants "${jobs[@]}" --timeout 60 --output target "${file_args[@]}" "$@" -- --lib
