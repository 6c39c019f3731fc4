#!/usr/bin/env bash
# Installs what it needs and runs every check CI runs:
#   formatting, clippy -D warnings, core and CLI unit tests, the module built for vendored
#   nginx 1.28 and for Debian's nginx 1.22 (production and test-hooks builds), and the
#   integration tests (real nginx, real clients, a load test in each nginx).
# Extra arguments go to pytest (e.g. scripts/test.sh -k routing).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

step() { printf '\n==> %s\n' "$*"; }

step "setup"
scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "module layers (scripts/check_layers.py)"
python3 scripts/check_layers.py

step "unit tests (origin-core, origin-cli)"
cargo test

step "module for vendored nginx 1.28"
make TEST_HOOKS=1
make

step "module for Debian's nginx"
make debian TEST_HOOKS=1
make debian

step "ismtool (release)"
cargo build --release -p origin-cli

step "integration tests"
exec build/venv/bin/pytest tests "$@"
