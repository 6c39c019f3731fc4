#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 600), seeded from the test fixtures,
# and prints the executions libFuzzer reports. Installs cargo-fuzz if missing. Stable Rust
# builds the sanitizer flags with RUSTC_BOOTSTRAP=1.
#
# usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root/fuzz"
secs=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(box_reader index_builder ingest_stream live_timeline ism_parser url_route text_parsers packagers remote_inputs request_engine content_protection timed_metadata index_entry)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1

seed() { # TARGET FILES...
  local dir="corpus/$1"; shift
  mkdir -p "$dir"
  for f in "$@"; do cp -n "$f" "$dir/" 2>/dev/null || true; done
}
media=("$root"/tests/fixtures/*.mp4 "$root"/tests/fixtures/*.ismv "$root"/tests/fixtures/*.isma \
       "$root"/tests/fixtures/*.cmfv "$root"/tests/fixtures/*.cmfa)
seed box_reader "${media[@]}"
seed index_builder "${media[@]}"
seed packagers "$root"/tests/fixtures/*.mp4
seed request_engine "$root"/tests/fixtures/*.mp4
seed content_protection "${media[@]}"
seed ingest_stream "${media[@]}"
seed ism_parser "$root"/fuzz/seeds/*.ism*
seed url_route "$root"/fuzz/seeds/*.url
seed timed_metadata "$root"/fuzz/seeds/*.scte35
# Index store entries of three fixtures (written for the identity the target reads them as).
seed index_entry "$root"/fuzz/seeds/*.entry
# Remote inputs: source URLs, Content-Range values and sparse-source runs.
mkdir -p corpus/remote_inputs
printf 'http://storage/media/a/b.mp4' > corpus/remote_inputs/seed-url
printf 'bytes 0-262143/1485793208' > corpus/remote_inputs/seed-range
# The text target reads its first byte as the format: 0 WebVTT, 1 TTML, 2 wvtt sample.
mkdir -p corpus/text_parsers
{ printf '\0'; cat "$root/tests/fixtures/subtitles-eng.vtt"; } > corpus/text_parsers/seed-vtt
{ printf '\1'; cat "$root/tests/fixtures/subtitles-eng.ttml"; } > corpus/text_parsers/seed-ttml

# Build every target once, then run the binaries: edits made while a long run goes on do not
# change what is being fuzzed half-way.
cargo fuzz build -O
bin="$root/fuzz/target/x86_64-unknown-linux-gnu/release"
mkdir -p "$root/fuzz/artifacts"
for t in "${targets[@]}"; do
  log="$root/fuzz/$t.log"
  mkdir -p "corpus/$t"
  "$bin/$t" "corpus/$t" -max_total_time="$secs" -max_len=262144 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$root/fuzz/artifacts/" >"$log" 2>&1 ||
    { echo "$t: FAILED (see $log)"; tail -30 "$log"; exit 1; }
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  echo "$t: ${secs}s, $execs executions, no crash"
done
