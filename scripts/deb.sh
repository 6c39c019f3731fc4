#!/usr/bin/env bash
# Packages the module built for Debian's nginx (`make debian`) and ismtool as
#   build/libnginx-mod-http-origin_<version>_<arch>.deb
# laid out like Debian's own nginx modules (libnginx-mod-http-geoip & co.):
#   /usr/lib/nginx/modules/ngx_http_origin_module.so
#   /usr/share/nginx/modules-available/mod-http-origin.conf   load_module modules/ngx_http_origin_module.so;
#   /etc/nginx/modules-enabled/50-mod-http-origin.conf        symlink made by postinst (not shipped)
#   /usr/bin/ismtool
#   /usr/share/doc/libnginx-mod-http-origin/copyright
# It depends on the nginx-abi-* virtual package the installed nginx provides, so it installs
# only next to an nginx with that exact module ABI. The maintainer scripts are the ones
# dh_nginx writes: enable on first install, keep an admin's disabling on upgrade, move the link
# aside on remove, delete it on purge, and trigger `nginx-reload` (Debian's nginx reloads then
# only if it is running).
#
# usage: scripts/deb.sh        (the Makefile's `deb` target builds the module and ismtool first)
# env:   DEBFULLNAME, DEBEMAIL  the Maintainer field
set -euo pipefail
umask 022

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build="$root/build"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

package=libnginx-mod-http-origin
module=ngx_http_origin_module.so
conf_name=mod-http-origin.conf
link_name=50-mod-http-origin.conf

for tool in dpkg-deb dpkg-query dpkg-shlibdeps strip; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install dpkg-dev binutils)"
done

# ------------------------------------------------------------------ the installed nginx
nginx_bin=/usr/sbin/nginx
nginx_pkg=$(dpkg-query -S "$nginx_bin" 2>/dev/null | head -1 | cut -d: -f1) ||
  die "$nginx_bin belongs to no package: install Debian's nginx (apt-get install nginx)"
[ -n "$nginx_pkg" ] || die "$nginx_bin belongs to no package: install Debian's nginx"
abi=$(dpkg-query -W -f='${Provides}' "$nginx_pkg" | tr ',' '\n' | tr -d ' ' | grep '^nginx-abi-' | head -1) ||
  true
[ -n "$abi" ] || die "$nginx_pkg provides no nginx-abi-* package: not Debian's nginx?"
nginx_version=$("$nginx_bin" -v 2>&1 | sed -n 's|.*nginx/\([0-9.]*\).*|\1|p')
[ -n "$nginx_version" ] || die "cannot read the version of $nginx_bin"
modules_path=$("$nginx_bin" -V 2>&1 | grep -o -- '--modules-path=[^ ]*' | cut -d= -f2-)
modules_path=${modules_path:-/usr/lib/nginx/modules}

# ------------------------------------------------------------------ what goes in
so="$build/nginx-$nginx_version/modules/$module"
[ -f "$so" ] || die "$so missing: run make debian (or make deb)"
# scripts/build.sh debian links build/nginx-<v>/sbin/nginx to the system nginx; any other
# build of the same version (a vanilla source tree) does not fit Debian's nginx.
[ "$(readlink -f "$build/nginx-$nginx_version/sbin/nginx")" = "$(readlink -f "$nginx_bin")" ] ||
  die "$so was not built for $nginx_bin: run make debian"

# scripts/build.sh debian builds ismtool in the same cargo run as the module (make deb runs it
# first): building it alone would compile the crates they share again, with other features.
ismtool="$root/target/release/ismtool"
[ -x "$ismtool" ] || die "$ismtool missing: run make deb"

version=$(sed -n '/^\[workspace\.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -1)
[ -n "$version" ] || die "no version in [workspace.package] of Cargo.toml"
arch=$(dpkg --print-architecture)
maintainer="${DEBFULLNAME:-ngx-origin maintainers} <${DEBEMAIL:-ngx-origin@users.noreply.github.com}>"
homepage=$(sed -n '/^\[workspace\.package\]/,/^\[/s/^repository *= *"\(.*\)"/\1/p' Cargo.toml | head -1)
# File dates from the last commit, so the same tree gives the same package.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH

# ------------------------------------------------------------------ the tree
stage="$build/deb/$package"
rm -rf "$stage"
mkdir -p "$stage/DEBIAN"
pkgroot="$stage"
install -d "$pkgroot$modules_path" "$pkgroot/usr/bin" "$pkgroot/usr/share/nginx/modules-available" \
  "$pkgroot/usr/share/doc/$package"
# Stripped as dh_strip does (the build keeps its debug info).
install -m 0644 "$so" "$pkgroot$modules_path/$module"
strip --remove-section=.comment --remove-section=.note --strip-unneeded "$pkgroot$modules_path/$module"
install -m 0755 "$ismtool" "$pkgroot/usr/bin/ismtool"
strip --remove-section=.comment --remove-section=.note "$pkgroot/usr/bin/ismtool"
# Relative to nginx's prefix (/usr/share/nginx, whose modules/ links to the modules path), as
# Debian's modules write it.
printf 'load_module modules/%s;\n' "$module" >"$pkgroot/usr/share/nginx/modules-available/$conf_name"
cat >"$pkgroot/usr/share/doc/$package/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ngx-origin
Source: $homepage

Files: *
Copyright: ngx-origin contributors
License: Apache-2.0
 On Debian systems, the full text of the Apache License, Version 2.0 can be
 found in the file /usr/share/common-licenses/Apache-2.0.
EOF
chmod 0644 "$pkgroot/usr/share/doc/$package/copyright"

# The module must load into this nginx (same version, same signature) before it is packaged.
check=$(mktemp -d)
trap 'rm -rf "$check"' EXIT
cat >"$check/nginx.conf" <<EOF
load_module $pkgroot$modules_path/$module;
pid $check/nginx.pid;
events {}
EOF
"$nginx_bin" -p "$check" -c "$check/nginx.conf" -e "$check/error.log" -t -q 2>"$check/out" || {
  cat "$check/out" >&2
  die "$nginx_bin refuses $so"
}

# ------------------------------------------------------------------ DEBIAN/
# Library dependencies as dpkg-shlibdeps computes them (it wants a debian/control in its cwd).
mkdir -p "$check/debian"
printf 'Source: ngx-origin\n\nPackage: %s\nArchitecture: any\n' "$package" >"$check/debian/control"
shlibs=$(cd "$check" && dpkg-shlibdeps -O --warnings=0 \
  "$pkgroot$modules_path/$module" "$pkgroot/usr/bin/ismtool" 2>/dev/null |
  sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || die "dpkg-shlibdeps found no library dependencies"

installed_size=$(du -s -k --apparent-size --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<EOF
Package: $package
Source: ngx-origin
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $installed_size
Depends: $abi, $shlibs
Recommends: nginx
Section: httpd
Priority: optional
Homepage: $homepage
Description: just-in-time video packaging module for Nginx (ngx-origin)
 ngx-origin packages MP4 and fragmented-MP4 sources into MPEG-DASH, HLS,
 Smooth Streaming and HDS on request and takes live ingest from encoders,
 with the usp_* directives and the .ism server-manifest format of the
 "Unified Origin" module.
 .
 This package holds the module, built for nginx $nginx_version
 ($abi), and ismtool, which creates and inspects server manifests.
EOF

(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
  xargs -0 md5sum) >"$stage/DEBIAN/md5sums"
# No conffiles: everything shipped lives under /usr; the link in /etc is the scripts' work.

# Maintainer scripts with the conventions of Debian's own nginx modules (dh_nginx): the link in
# modules-enabled is made on install, renamed to *.removed (outside the *.conf include) on
# remove, restored on a reinstall, dropped on purge; an upgrade keeps the administrator's
# choice. nginx's own trigger reloads nginx, and only if it runs.
enabled="/etc/nginx/modules-enabled/$link_name"
cat >"$stage/DEBIAN/postinst" <<EOF
#!/bin/sh
set -e
if [ -L $enabled.removed ]; then
	rm $enabled.removed
	reinstall=true
fi
if [ -z "\$2" ] || [ "\${reinstall:-}" = true ]; then
	ln -sf /usr/share/nginx/modules-available/$conf_name $enabled
fi
if [ "\$1" = configure ] && command -v dpkg-trigger >/dev/null; then
	dpkg-trigger --no-await nginx-reload
fi
EOF

cat >"$stage/DEBIAN/prerm" <<EOF
#!/bin/sh
set -e
# Disabled before the files go, so that no reload sees a load_module line without its .so.
if { [ "\$1" = remove ] || [ "\$1" = deconfigure ]; } && [ -L $enabled ]; then
	mv $enabled $enabled.removed
fi
EOF

cat >"$stage/DEBIAN/postrm" <<EOF
#!/bin/sh
set -e
if [ "\$1" = purge ]; then
	rm -f $enabled $enabled.removed
fi
if [ "\$1" = remove ] && command -v dpkg-trigger >/dev/null; then
	dpkg-trigger --no-await nginx-reload
fi
EOF
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/md5sums"
find "$stage" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

deb="$build/${package}_${version}_${arch}.deb"
rm -f "$deb"
dpkg-deb --build --root-owner-group "$stage" "$deb" >/dev/null
say "package: $deb ($abi)"
echo "$deb"
