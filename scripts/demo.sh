#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: installs what it needs, builds nginx and the
# module, makes the sample media, starts nginx serving it on localhost and prints the URLs.
#
# usage: scripts/demo.sh          start (PORT=8080 by default; a free port if 8080 is taken)
#        scripts/demo.sh stop     stop the demo nginx
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
demo="$root/build/demo"
say() { printf '==> %s\n' "$*" >&2; }

stop_demo() {
  if [ -f "$demo/logs/nginx.pid" ] && kill -0 "$(cat "$demo/logs/nginx.pid")" 2>/dev/null; then
    kill -QUIT "$(cat "$demo/logs/nginx.pid")"
    say "stopped the demo nginx"
  fi
}

if [ "${1:-}" = stop ]; then
  stop_demo
  exit 0
fi

scripts/setup.sh
say "building nginx 1.28 and the module"
make >/dev/null
cargo build --release -q -p origin-cli
say "making sample media in build/media"
scripts/make-test-media.sh "$root/build/media"

port=${PORT:-8080}
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if port_in_use "$port"; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
fi

stop_demo
mkdir -p "$demo/logs" "$demo/tmp" "$demo/html"
chmod -R a+rX "$root/build/media" "$demo"
ln -sfn "$root/build/media" "$demo/html/media"

# The page lists what this build serves; players for the packaged formats join it with them.
{
  echo '<!doctype html><meta charset="utf-8"><title>ngx-origin demo</title>'
  echo '<style>body{font:15px system-ui;margin:2em}video{width:480px;display:block;margin:.5em 0 1.5em}</style>'
  echo '<h1>ngx-origin demo</h1>'
  echo '<p>Progressive MP4 served by the module (HEAD, Range, ETag, 304):</p>'
  for f in progressive.mp4 ladder-video-720.mp4 hevc.mp4; do
    echo "<h3>$f</h3><video controls muted src=\"/media/$f\"></video>"
  done
} > "$demo/html/index.html"

user_line=""
[ "$(id -u)" = 0 ] && user_line="user root;"
cat > "$demo/nginx.conf" <<CONF
load_module $root/build/current/modules/ngx_http_origin_module.so;
$user_line
worker_processes 2;
pid $demo/logs/nginx.pid;
error_log $demo/logs/error.log info;
events { worker_connections 1024; }
http {
    access_log $demo/logs/access.log;
    client_body_temp_path $demo/tmp/client_body;
    proxy_temp_path $demo/tmp/proxy;
    fastcgi_temp_path $demo/tmp/fastcgi;
    uwsgi_temp_path $demo/tmp/uwsgi;
    scgi_temp_path $demo/tmp/scgi;
    types { text/html html; text/vtt vtt; }
    sendfile on;
    server {
        listen 127.0.0.1:$port;
        root $demo/html;
        disable_symlinks off;
        location ~ \.(ism|isml|mp4)(/.*)?$ { usp_handle_ism; }
    }
}
CONF
"$root/build/current/sbin/nginx" -p "$demo" -c "$demo/nginx.conf" -e "$demo/logs/error.log"

base="http://127.0.0.1:$port"
cat <<MSG

ngx-origin demo is running ($("$root/build/current/sbin/nginx" -v 2>&1 | sed 's/.*: //'), logs in build/demo/logs):

  player page        $base/
  progressive MP4    $base/media/progressive.mp4
  720p rendition     $base/media/ladder-video-720.mp4
  H.265              $base/media/hevc.mp4
  how a URL routes   target/release/ismtool route '/media/video.ism/QualityLevels(800000)/Fragments(video=0)'

stop it with: scripts/demo.sh stop
MSG
