# ngx-origin build entry points.
#
#   make                              module + nginx 1.28 (vendored, nothing downloaded), ismtool
#   make debian                       module for the Debian nginx installed by apt, ismtool
#   make deb                          build/libnginx-mod-http-origin_<version>_<arch>.deb for that nginx
#   make NGINX_SRC=/path/nginx-x.y.z  module (and nginx) for any nginx source tree
#   make NGINX_VERSION=x.y.z          same, with the tree in NGINX_SRC or build/src/nginx-x.y.z
#   make install [MODULES_DIR=...]    copy the last built module into that nginx's modules dir
#   make test                         everything CI runs (scripts/test.sh)
#   make unittest | check             core tests | fmt + clippy + the module layers
#
# Every build leaves build/nginx-<version>/{sbin/nginx,modules/ngx_http_origin_module.so}
# and build/current pointing at the last one.

NGINX_SRC ?=
NGINX_VERSION ?=
MODULES_DIR ?=
TEST_HOOKS ?=

hooks := $(if $(TEST_HOOKS),--test-hooks,)

.PHONY: all module debian deb install test unittest check demo clean

all: module

module:
ifneq ($(NGINX_SRC),)
	scripts/build.sh source "$(NGINX_SRC)" $(hooks)
else ifneq ($(NGINX_VERSION),)
	@if [ -d "build/src/nginx-$(NGINX_VERSION)" ]; then \
		scripts/build.sh source "build/src/nginx-$(NGINX_VERSION)" $(hooks); \
	else \
		echo "error: no nginx $(NGINX_VERSION) source tree." >&2; \
		echo "Download nginx-$(NGINX_VERSION).tar.gz from nginx.org, then either" >&2; \
		echo "  tar -xzf nginx-$(NGINX_VERSION).tar.gz -C build/src/   (giving build/src/nginx-$(NGINX_VERSION))" >&2; \
		echo "or pass the tree: make NGINX_SRC=/path/to/nginx-$(NGINX_VERSION)" >&2; \
		exit 2; \
	fi
else
	scripts/build.sh vendored $(hooks)
endif

debian:
	scripts/build.sh debian $(hooks)

# The release module (never the test-hooks one, whatever TEST_HOOKS says), then the package.
deb:
	scripts/build.sh debian
	scripts/deb.sh

install:
	scripts/build.sh install $(MODULES_DIR)

test:
	scripts/test.sh

unittest:
	cargo test

check:
	cargo fmt --all -- --check
	cargo clippy --release --workspace --all-targets -- -D warnings
	python3 scripts/check_layers.py

demo:
	scripts/demo.sh

clean:
	rm -rf build target
