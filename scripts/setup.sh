#!/usr/bin/env bash
# Installs everything the build, the demo and the tests need on Debian 12, idempotently:
# apt packages (only when one is missing), the Rust components, and a Python virtualenv with
# the test clients in build/venv. Safe to run again and again.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

say() { printf '==> %s\n' "$*" >&2; }

apt_packages=(
  build-essential pkg-config libclang-dev libpcre2-dev libssl-dev zlib1g-dev  # module + nginx
  dpkg-dev nginx                                    # make debian: Debian's nginx and its source
  libnginx-mod-http-lua                             # the operators' Lua status remapping, tested
  ffmpeg                                            # test media, frame-exact checks
  curl wrk python3-venv strace openssl              # load tests, test harness (TLS certs), bench syscall counts
  libxxhash0                                        # record checksums of synthetic live archives (tests, bench)
  chromium                                          # browser players (headless)
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-libav       # GStreamer playbin3 (DASH, HLS, Smooth)
)

missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing apt packages: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if command -v rustup >/dev/null; then
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
  done
fi

# A real S3 server that checks SigV4 signatures, for the S3 tests (see tests/test_s3.py).
# Building it takes several minutes, once: cargo keeps it in ~/.cargo/bin.
if ! cargo install --list 2>/dev/null | grep -q '^s3s-fs v0.14.1'; then
  say "installing s3s-fs 0.14.1 (a one-time build of a few minutes)"
  cargo install s3s-fs@0.14.1 --locked --features binary --quiet
fi

venv="$root/build/venv"
stamp="$venv/.requirements"
if [ ! -x "$venv/bin/python" ]; then
  say "creating $venv"
  mkdir -p "$root/build"
  python3 -m venv "$venv"
fi
if ! cmp -s tests/requirements.txt "$stamp"; then
  say "installing Python test requirements"
  "$venv/bin/pip" install -q --disable-pip-version-check -r tests/requirements.txt
  cp tests/requirements.txt "$stamp"
fi

# Browser players (demo page, headless-Chromium tests), pinned in tests/web/package.json. The
# machine image ships Node.js with npm; only where it does not, take Debian's.
if ! command -v npm >/dev/null; then
  say "installing Node.js and npm from Debian"
  sudo_cmd=()
  [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
web="$root/tests/web"
if command -v npm >/dev/null; then
  if ! cmp -s "$web/package.json" "$web/node_modules/.package.json.installed" 2>/dev/null; then
    say "installing browser players (npm)"
    (cd "$web" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
    cp "$web/package.json" "$web/node_modules/.package.json.installed"
  fi
else
  say "npm not found: the demo page's players will be missing (apt-get install npm)"
fi
