#!/usr/bin/env bash
# Builds the fuzz target `request` and runs it for a bounded time on a copy
# of the seed corpus (the committed seeds stay as they are). For CI and by
# hand:
#
#     crates/eventlet-http/fuzz/run.sh [SECONDS]     # default 30
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). cargo fuzz passes nightly
# flags to rustc (-Zsanitizer=address ...); on a stable toolchain
# RUSTC_BOOTSTRAP=1 lets it. A crash fails the script, with the input saved
# under fuzz/artifacts/request/ and its reproduction command printed.
set -euo pipefail
secs="${1:-30}"
case "$secs" in
    '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac
fuzz_dir="$(cd "$(dirname "$0")" && pwd)"
cd "$fuzz_dir/.."
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null 2>&1 || { echo "cargo-fuzz is missing (cargo install cargo-fuzz)" >&2; exit 1; }

run_corpus="$(mktemp -d)"
trap 'rm -rf "$run_corpus"' EXIT
cp "$fuzz_dir"/corpus/request/* "$run_corpus"/

cargo fuzz build --fuzz-dir "$fuzz_dir" request
# -timeout: one input taking over 10 s is a hang, and a failure.
cargo fuzz run --fuzz-dir "$fuzz_dir" request "$run_corpus" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=16384 -print_final_stats=1
