#!/usr/bin/env bash
# Builds every fuzz target and runs each for a bounded time, one after the
# other, with one libFuzzer process (one job, one worker).
#
#   fuzz/run.sh [seconds-per-target] [target...]      (default: 60 s, all targets)
#
# Exits non-zero when a target crashes, times out or runs out of memory,
# naming the target and its artifact (fuzz/artifacts/<target>/...; reproduce
# with `cargo fuzz run <target> <artifact>` in fuzz/).
#
# New inputs the fuzzer finds go to a scratch corpus, not the repository.
# FUZZ_MERGE=1 merges the ones that add coverage into fuzz/corpus/<target>/
# afterwards (libFuzzer -set_cover_merge=1 -use_counters=0: a small set of
# inputs that covers what the existing corpus does not, each at most the
# target's max_len).
#
# Environment (all optional):
#   CARGO_TARGET_DIR  build directory (default fuzz/target)
#   FUZZ_SANITIZER    address (default) or none (about twice as fast, no ASan)
#   FUZZ_JOBS         cargo build jobs (default 1)
#   FUZZ_NICE         nice level of builds and runs (default 19)
#   FUZZ_MERGE        1: merge new coverage into fuzz/corpus/ (default 0)
#   FUZZ_WORK         scratch corpus and logs (default: a temporary directory)
#   CI=true           install cargo-fuzz when it is missing
set -uo pipefail

FUZZ_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$FUZZ_DIR"

SECONDS_PER_TARGET=${1:-60}
shift || true
if ! [[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ ]] || [ "$SECONDS_PER_TARGET" -lt 1 ]; then
    echo "usage: fuzz/run.sh [seconds-per-target] [target...]" >&2
    exit 2
fi

ALL_TARGETS=(inventory_json inventory_envelope http_query module_file decode_varbinds snmp_response polled_wire)
if [ "$#" -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL_TARGETS[@]}"); fi

# Longest input the fuzzer makes up, per target: large enough for every
# seed, small enough that new corpus entries stay small.
max_len() {
    case "$1" in
        inventory_json | inventory_envelope | module_file | polled_wire) echo 8192 ;;
        *) echo 4096 ;;
    esac
}

# cargo-fuzz needs nightly flags (-Zsanitizer, sanitizer coverage): on a
# stable toolchain they are allowed by RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=${RUSTC_BOOTSTRAP:-1}
export CARGO_BUILD_JOBS=${FUZZ_JOBS:-1}
TARGET_DIR=${CARGO_TARGET_DIR:-$FUZZ_DIR/target}
SANITIZER=${FUZZ_SANITIZER:-address}
NICE=(nice -n "${FUZZ_NICE:-19}")

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: cargo-fuzz is not installed (the \`cargo fuzz\` command is missing)." >&2
    if [ "${CI:-}" = "true" ]; then
        echo "fuzz/run.sh: CI=true: installing it with \`cargo install cargo-fuzz --locked\`" >&2
        "${NICE[@]}" cargo install cargo-fuzz --locked || {
            echo "fuzz/run.sh: installing cargo-fuzz failed" >&2
            exit 2
        }
    else
        echo "fuzz/run.sh: install it with \`cargo install cargo-fuzz --locked\` (or run with CI=true)" >&2
        exit 2
    fi
fi

BUILD_FLAGS=(--sanitizer "$SANITIZER" --target-dir "$TARGET_DIR")

echo "== building ${#TARGETS[@]} fuzz target(s) (sanitizer: $SANITIZER, target dir: $TARGET_DIR)"
for t in "${TARGETS[@]}"; do
    if ! "${NICE[@]}" cargo fuzz build "${BUILD_FLAGS[@]}" "$t"; then
        echo "fuzz/run.sh: building fuzz target $t failed" >&2
        exit 2
    fi
done

WORK=${FUZZ_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/promsnmp-fuzz.XXXXXX")}
mkdir -p "$WORK"
declare -a SUMMARY=()
declare -a FAILED=()

for t in "${TARGETS[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t" "$WORK/$t"
    log="$WORK/$t.log"
    before=$(date +%s)
    echo "== $t: ${SECONDS_PER_TARGET}s (max_len $(max_len "$t"), log $log)"
    # New inputs go to the first (scratch) directory; the committed corpus is read only.
    timeout --kill-after=30 $((SECONDS_PER_TARGET + 300)) \
        "${NICE[@]}" cargo fuzz run "${BUILD_FLAGS[@]}" "$t" "$WORK/$t" "corpus/$t" -- \
        -max_total_time="$SECONDS_PER_TARGET" \
        -rss_limit_mb=2048 \
        -max_len="$(max_len "$t")" \
        -timeout=20 \
        -print_final_stats=1 \
        -artifact_prefix="$FUZZ_DIR/artifacts/$t/" >"$log" 2>&1
    status=$?
    elapsed=$(($(date +%s) - before))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    if [ "$status" -ne 0 ] || [ -n "$artifact" ]; then
        kind=$(grep -m1 -oE 'ERROR: libFuzzer: [a-z-]+|ERROR: AddressSanitizer: [a-z-]+|panicked at [^:]+:[0-9]+' "$log" || true)
        echo "!! $t FAILED (exit $status${kind:+, $kind})"
        echo "!!   artifact: ${artifact:-none written (see the log)}"
        echo "!!   log:      $log"
        grep -m1 -A1 'panicked at' "$log" | sed 's/^/!!   /' || true
        # The first frame outside the standard library and libFuzzer.
        where=$(grep -E '^ +at /' "$log" | grep -v -e '/rustc/' -e 'libfuzzer' | head -1 | sed 's/^ *at //')
        [ -n "$where" ] && echo "!!   where:    $where"
        FAILED+=("$t: ${artifact:-exit $status, see $log}")
        SUMMARY+=("$(printf '%-20s %6ss %12s execs  FAILED' "$t" "$elapsed" "${execs:-?}")")
    else
        SUMMARY+=("$(printf '%-20s %6ss %12s execs  ok' "$t" "$elapsed" "${execs:-?}")")
    fi
    if [ "${FUZZ_MERGE:-0}" = "1" ]; then
        echo "== $t: merging new coverage into corpus/$t"
        "${NICE[@]}" cargo fuzz run "${BUILD_FLAGS[@]}" "$t" "corpus/$t" "$WORK/$t" -- \
            -set_cover_merge=1 -use_counters=0 -max_len="$(max_len "$t")" -rss_limit_mb=2048 -timeout=20 \
            -artifact_prefix="$FUZZ_DIR/artifacts/$t/" >"$WORK/$t.merge.log" 2>&1 ||
            echo "!! $t: merge failed (see $WORK/$t.merge.log)"
        echo "   corpus/$t: $(find "corpus/$t" -type f | wc -l) files, $(du -sk "corpus/$t" | cut -f1) KiB"
    fi
done

echo "== summary (${SECONDS_PER_TARGET}s per target)"
printf '%s\n' "${SUMMARY[@]}"
if [ "${#FAILED[@]}" -gt 0 ]; then
    echo "== ${#FAILED[@]} target(s) failed:"
    printf '  %s\n' "${FAILED[@]}"
    exit 1
fi
echo "== no crashes, timeouts or out-of-memory"
