#!/usr/bin/env bash
# Builds ngx_http_origin_module for one nginx and leaves stable paths behind:
#   build/nginx-<version>/sbin/nginx                          the matching nginx binary (or a link)
#   build/nginx-<version>/modules/ngx_http_origin_module.so   the module
#   build/nginx-<version>/test-modules/ngx_http_origin_module.so   (--test-hooks builds)
#   build/current -> nginx-<version>                          the last one built
#
# usage: scripts/build.sh vendored [--test-hooks]       nginx 1.28 from the nginx-src crate
#        scripts/build.sh debian [--test-hooks]         the Debian nginx installed by apt
#        scripts/build.sh source DIR [--test-hooks]     any nginx source tree (configured if needed)
#        scripts/build.sh install [MODULES_DIR]         copy build/current's module into nginx
#
# Called by the Makefile; the Makefile's targets are the documented interface.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build="$root/build"
mode=${1:-vendored}
shift || true

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

test_hooks=0
args=()
for a in "$@"; do
  case "$a" in
    --test-hooks) test_hooks=1 ;;
    *) args+=("$a") ;;
  esac
done
set -- "${args[@]+"${args[@]}"}"

features=()
module_subdir=modules
if [ "$test_hooks" = 1 ]; then
  features=(--features ngx_http_origin_module/test-hooks)
  module_subdir=test-modules
fi

nginx_version_of_source() { # DIR -> x.y.z
  sed -n 's/^#define NGINX_VERSION *"\(.*\)"/\1/p' "$1/src/core/nginx.h"
}

# place VERSION SO NGINX_BIN LINK(0|1): copy the module and the nginx binary into build/.
place() {
  local version=$1 so=$2 nginx_bin=$3 link=$4
  local dir="$build/nginx-$version"
  mkdir -p "$dir/sbin" "$dir/$module_subdir"
  install -m 0644 "$so" "$dir/$module_subdir/ngx_http_origin_module.so"
  rm -f "$dir/sbin/nginx"
  if [ "$link" = 1 ]; then
    ln -s "$nginx_bin" "$dir/sbin/nginx"
  else
    install -m 0755 "$nginx_bin" "$dir/sbin/nginx"
  fi
  ln -sfn "nginx-$version" "$build/current"
  say "module: $dir/$module_subdir/ngx_http_origin_module.so"
  say "nginx:  $dir/sbin/nginx"
}

# The vendored and the Debian builds share target/ (their nginx-sys and ngx differ by features,
# so cargo keeps both) and build ismtool in the same run: origin-core and every other crate
# they have in common are compiled once, with one set of features, for the module, the other
# nginx and ismtool. One build at a time: they overwrite the same target/release/*.so.
lock_target() {
  mkdir -p "$root/target"
  exec 9>"$root/target/.build-module.lock"
  flock 9
}

build_vendored() {
  say "building the module with vendored nginx (nginx-src crate), and ismtool"
  lock_target
  cargo build --release -p ngx_http_origin_module -p origin-cli "${features[@]}"
  local objs
  objs=$(ls -td target/release/build/nginx-sys-*/out/objs 2>/dev/null | while read -r d; do
    [ -x "$d/nginx" ] && echo "$d" && break; done)
  [ -n "$objs" ] || die "vendored nginx binary not found under target/release/build"
  local version
  version=$("$objs/nginx" -v 2>&1 | sed -n 's|.*nginx/||p')
  place "$version" target/release/libngx_http_origin_module.so "$objs/nginx" 0
}

# configure_source DIR: runs ./configure --with-compat unless the tree is configured already.
configure_source() {
  local src=$1
  if [ -f "$src/objs/Makefile" ] && [ -f "$src/objs/ngx_auto_config.h" ]; then
    grep -q 'NGX_COMPAT' "$src/objs/ngx_auto_config.h" ||
      say "warning: $src is configured without --with-compat; the module only loads into an nginx built from exactly this configuration"
    return
  fi
  say "configuring $src (--with-compat)"
  # Release tarballs have ./configure; a checkout of nginx's repository has auto/configure.
  local configure=./configure
  [ -x "$src/configure" ] || configure=auto/configure
  (cd "$src" && $configure --with-compat --with-threads --with-http_ssl_module \
      --with-http_v2_module --with-http_realip_module --with-http_slice_module)
}

# cargo_for_source SRC VERSION TARGET_DIR [PACKAGE...]: builds the module (and the other
# packages given) against a configured tree.
cargo_for_source() {
  local src=$1 version=$2 target_dir=$3
  shift 3
  local packages=()
  for p in ngx_http_origin_module "$@"; do packages+=(-p "$p"); done
  NGINX_SOURCE_DIR="$src" NGINX_BUILD_DIR="$src/objs" CARGO_TARGET_DIR="$target_dir" \
    cargo build --release "${packages[@]}" --no-default-features \
      --features ngx_http_origin_module/export-modules "${features[@]}" >&2
  echo "$target_dir/release/libngx_http_origin_module.so"
}

build_source() {
  local src
  src=$(cd "${1:?usage: build.sh source DIR}" && pwd)
  [ -f "$src/src/core/nginx.h" ] || die "$src is not an nginx source tree (no src/core/nginx.h)"
  local version
  version=$(nginx_version_of_source "$src")
  configure_source "$src"
  if [ ! -x "$src/objs/nginx" ]; then
    say "building nginx $version in $src"
    make -C "$src" -j"$(nproc)" >/dev/null
  fi
  local so
  # Any nginx version: a target directory each, so switching trees rebuilds nothing.
  so=$(cargo_for_source "$src" "$version" "$root/target/nginx-$version")
  place "$version" "$so" "$src/objs/nginx" 0
}

build_debian() {
  command -v dpkg-query >/dev/null || die "dpkg-query not found: make debian needs Debian or Ubuntu"
  local deb_version
  deb_version=$(dpkg-query -W -f='${Version}' nginx 2>/dev/null || true)
  [ -n "$deb_version" ] || die "Debian's nginx is not installed (apt-get install nginx)"
  local dir="$build/src/debian-nginx-$deb_version"
  local src="$dir/usr/share/nginx/src"
  if [ ! -f "$src/src/core/nginx.h" ]; then
    say "fetching nginx-dev=$deb_version (the source of the installed nginx)"
    local dl
    dl=$(mktemp -d)
    (cd "$dl" && apt-get download "nginx-dev=$deb_version" >/dev/null) ||
      die "apt-get download nginx-dev=$deb_version failed (run apt-get update?)"
    rm -rf "$dir"
    mkdir -p "$dir"
    dpkg-deb -x "$dl"/nginx-dev_*.deb "$dir"
    rm -rf "$dl"
  fi
  if [ ! -f "$src/objs/ngx_auto_config.h" ]; then
    say "configuring the Debian nginx source with Debian's flags"
    # conf_flags holds the exact ./configure arguments Debian used for /usr/sbin/nginx.
    (cd "$src" && . ./conf_flags && ./configure "${NGX_CONF_FLAGS[@]}" >/dev/null)
  fi
  local version
  version=$(nginx_version_of_source "$src")
  local so
  lock_target
  so=$(cargo_for_source "$src" "$version" "$root/target" origin-cli)
  place "$version" "$so" /usr/sbin/nginx 1
}

# The modules directory an nginx binary loads relative module paths from.
modules_dir_of() {
  local nginx=$1 v
  v=$("$nginx" -V 2>&1)
  local m p
  m=$(printf '%s\n' "$v" | grep -o -- '--modules-path=[^ ]*' | head -1 | cut -d= -f2-)
  if [ -n "$m" ]; then echo "$m"; return; fi
  p=$(printf '%s\n' "$v" | grep -o -- '--prefix=[^ ]*' | head -1 | cut -d= -f2-)
  echo "${p:-/usr/local/nginx}/modules"
}

install_module() {
  [ -e "$build/current" ] || die "nothing built yet: run make (or make debian / make NGINX_SRC=...)"
  local so="$build/current/modules/ngx_http_origin_module.so"
  [ -f "$so" ] || die "$so missing: run make first"
  local dest=${1:-}
  if [ -z "$dest" ]; then
    dest=$(modules_dir_of "$build/current/sbin/nginx")
  fi
  mkdir -p "$dest"
  install -m 0644 "$so" "$dest/ngx_http_origin_module.so"
  say "installed $dest/ngx_http_origin_module.so"
  say "add to nginx.conf (main context): load_module $dest/ngx_http_origin_module.so;"
}

case "$mode" in
  vendored) build_vendored ;;
  debian) build_debian ;;
  source) build_source "$@" ;;
  install) install_module "$@" ;;
  *) die "unknown mode $mode (vendored | debian | source DIR | install [DIR])" ;;
esac
