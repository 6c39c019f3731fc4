#!/usr/bin/env bash
# Rewrites tests/golden/ from the current packagers; review the result with git diff.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ORIGIN_REGEN_GOLDEN=1 cargo test -q -p origin-core --test golden
git status --short tests/golden
