#!/usr/bin/env bash
# End-to-end benchmark against nginx (see scripts/bench.py): builds, makes the 2-hour title if
# missing, and prints the table that goes into docs/BENCHMARKS.md.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
scripts/setup.sh
make >/dev/null
scripts/make-test-media.sh build/media --long
exec build/venv/bin/python scripts/bench.py "$@"
