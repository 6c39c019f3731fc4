#!/usr/bin/env bash
# Installs what it needs and runs every check CI runs:
#   formatting, clippy -D warnings, core and CLI unit tests, the module built for vendored
#   nginx 1.28 and for Debian's nginx 1.22 (production and test-hooks builds) with ismtool, and
#   the integration tests (real nginx, real clients, a load test in each nginx), in parallel:
#   ORIGIN_TEST_JOBS pytest-xdist workers, by default 4 per CPU, since most tests wait on
#   encoders and players that run in real time, not on the CPU; then the few tests that measure
#   real-time behaviour (players' live latency), alone.
# Extra arguments go to pytest (e.g. scripts/test.sh -k routing).
# Each phase's wall time is printed at the end.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

phases=()
phase=""
phase_start=$SECONDS
end_phase() {
  [ -n "$phase" ] && phases+=("$(printf '%5ds  %s' $((SECONDS - phase_start)) "$phase")")
  phase=""
}
step() {
  end_phase
  phase=$*
  phase_start=$SECONDS
  printf '\n==> %s\n' "$*"
}
summary() {
  local rc=$?
  end_phase
  printf '\n==> wall time per phase\n'
  printf '%s\n' "${phases[@]}"
  printf '%5ds  total (exit status %d)\n' "$SECONDS" "$rc"
}
trap summary EXIT

step "setup"
scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all -- --check

# Release profile: the build scripts (the vendored nginx, bindgen) and proc-macros it compiles
# are the ones the module builds below use. No code here depends on debug_assertions.
step "cargo clippy -D warnings"
cargo clippy --release --workspace --all-targets -- -D warnings

step "module layers (scripts/check_layers.py)"
python3 scripts/check_layers.py

# The fuzz targets are built by cargo-fuzz only when fuzzing (scripts/fuzz.sh); checking them
# here keeps a change to the core's API from leaving them broken unnoticed.
step "fuzz targets compile (cargo check)"
cargo check --manifest-path fuzz/Cargo.toml --bins

step "unit tests (origin-core, origin-cli)"
cargo test

# Both variants per nginx: the test-hooks module is the one the integration tests load; the
# production module is loaded by test_panic.py (no panic trigger) and packaged by test_deb.py.
# scripts/build.sh builds ismtool with them, in the same cargo run.
step "module for vendored nginx 1.28, and ismtool"
make TEST_HOOKS=1
make

step "module for Debian's nginx, and ismtool"
make debian TEST_HOOKS=1
make debian

step "integration tests"
build/venv/bin/pytest tests -m "not quiet" -n "${ORIGIN_TEST_JOBS:-$((4 * $(nproc)))}" \
  --dist loadgroup "$@"

# Players' live latency is a real-time measurement: on a machine busy with the parallel run a
# player falls behind for want of CPU, not because of the origin. These run alone.
step "integration tests that need the machine to themselves"
# (Exit status 5: extra arguments selected none of them.)
build/venv/bin/pytest tests -m quiet -n 0 "$@" || [ $? -eq 5 ]
