#!/usr/bin/env bash
# Builds the IMAPFuzz libFuzzer target and runs it for SECONDS (default 60) over the seed corpus.
# Exits non-zero when libFuzzer finds a crash, a hang or a leak; the reproducer is left in .build-fuzz/crashes/.
# Usage: perf/fuzz/run-fuzz.sh [SECONDS]
set -euo pipefail
seconds="${1:-60}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
swift build -c release --product IMAPFuzz --sanitize=fuzzer --scratch-path .build-fuzz
binary=".build-fuzz/release/IMAPFuzz"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Work on a copy so the committed seed corpus only changes on purpose.
cp "$here"/corpus/* "$work"/
mkdir -p "$root/.build-fuzz/crashes"
# Let libFuzzer, not the Swift backtracer, handle traps, so it saves the input that caused them.
export SWIFT_BACKTRACE=enable=no
"$binary" "$work" -dict="$here/imap.dict" -max_total_time="$seconds" -max_len=4096 -timeout=10 \
    -rss_limit_mb=2048 -artifact_prefix="$root/.build-fuzz/crashes/" -print_final_stats=1
