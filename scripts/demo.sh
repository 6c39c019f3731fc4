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
  for pid in "$demo/logs/encoder.pid" "$demo/logs/encoder-ll.pid"; do
    if [ -f "$pid" ] && kill -0 "$(cat "$pid")" 2>/dev/null; then
      kill "$(cat "$pid")"
      say "stopped a demo encoder"
    fi
  done
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
say "building nginx 1.28, the module and ismtool"
make >/dev/null  # the module, nginx and ismtool
say "making sample media in build/media"
scripts/make-test-media.sh "$root/build/media"
media="$root/build/media"
# Rewritten every run: the sample set grows between versions.
(cd "$media" && "$root/target/release/ismtool" create -o demo.ism \
  ladder-video-360.ismv ladder-video-480.ismv ladder-video-720.ismv \
  ladder-audio-eng.isma ladder-audio-fra.isma subtitles-eng.mp4)
# The same ladder with ad cues (SCTE-35 splice_insert): a 2-second break at 2 s, and another
# at 6 s, in a cue track made from a list (ismtool cues) and listed beside the media.
cat >"$media/demo-ads.json" <<'CUES'
[{"time": 2, "out": true, "id": 1, "duration": 2}, {"time": 4, "out": false, "id": 1},
 {"time": 6, "out": true, "id": 2, "duration": 2}, {"time": 8, "out": false, "id": 2}]
CUES
"$root/target/release/ismtool" cues "$media/demo-ads.json" --duration 10 -o "$media/demo-ads.mp4" >/dev/null
(cd "$media" && "$root/target/release/ismtool" create -o demo-ads.ism \
  ladder-video-360.ismv ladder-video-480.ismv ladder-video-720.ismv \
  ladder-audio-eng.isma ladder-audio-fra.isma subtitles-eng.mp4 demo-ads.mp4 --splice_media=true)
# The same ladder encrypted on request: CENC for DASH (ClearKey license at /clearkey), AES-128
# for HLS (the key at /keys/demo.key). Demo keys: never use these for real content.
drm_kid=10f2b3c4d5e6f708192a3b4c5d6e7f80
drm_key=3a1c5e7f9b2d4f6081a3c5e7092b4d6f
(cd "$media" && "$root/target/release/ismtool" create -o demo-drm.ism \
  ladder-video-360.ismv ladder-video-480.ismv ladder-video-720.ismv \
  ladder-audio-eng.isma ladder-audio-fra.isma \
  "--iss.key=$drm_kid:$drm_key" "--hls.key=:$drm_key" --hls.license_server_url=/keys/demo.key)
b64url() { python3 -c 'import base64,sys; print(base64.urlsafe_b64encode(bytes.fromhex(sys.argv[1])).decode().rstrip("="))' "$1"; }
clearkey_license="{\"keys\":[{\"kty\":\"oct\",\"kid\":\"$(b64url $drm_kid)\",\"k\":\"$(b64url $drm_key)\"}],\"type\":\"temporary\"}"

port=${PORT:-8080}
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if port_in_use "$port"; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
fi

stop_demo
mkdir -p "$demo/logs" "$demo/tmp" "$demo/html"
chmod -R a+rX "$root/build/media" "$demo"
ln -sfn "$root/build/media" "$demo/html/media"
# The live channel's publishing point: a 60-second DVR window, archived; the workers write here.
rm -rf "$demo/html/live"
mkdir -p "$demo/html/live"
"$root/target/release/ismtool" create -o "$demo/html/live/channel1.isml" \
  --dvr_window_length=60 --archiving=1 --archive_length=600
# The low-latency channel: LL-HLS parts and LL-DASH chunks as the encoder's chunks land.
"$root/target/release/ismtool" create -o "$demo/html/live/lowlatency.isml" \
  --low_latency=true --dvr_window_length=30
chmod 0777 "$demo/html/live"
chmod 0666 "$demo/html/live/channel1.isml" "$demo/html/live/lowlatency.isml"

# The player page and the players it loads (installed by setup.sh from npm).
cp "$root/demo/index.html" "$demo/html/index.html"
mkdir -p "$demo/html/players"
web="$root/tests/web/node_modules"
for f in "$web/hls.js/dist/hls.min.js" "$web/dashjs/dist/modern/umd/dash.all.min.js" \
         "$web/dashjs/dist/modern/umd/dash.mss.min.js" "$web/shaka-player/dist/shaka-player.compiled.js"; do
  [ -f "$f" ] && cp "$f" "$demo/html/players/"
done
mkdir -p "$demo/html/keys"
python3 -c 'import sys; open(sys.argv[2], "wb").write(bytes.fromhex(sys.argv[1]))' "$drm_key" "$demo/html/keys/demo.key"
chmod -R a+rX "$demo/html"

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
    types { text/html html; application/javascript js; text/vtt vtt; }
    sendfile on;
    server {
        listen 127.0.0.1:$port;
        root $demo/html;
        disable_symlinks off;
        # Pushes create channels here (off by default): the demo listens on 127.0.0.1 only.
        location ^~ /live/ {
            usp_handle_ism; usp_handle_f4f; origin_live_auto_create on; client_max_body_size 0;
        }
        location ~ \.(ism|isml|mp4)(/.*)?$ {
            usp_handle_ism;
            usp_handle_f4f;
            origin_drm clearkey.license_server_url http://\$http_host/clearkey;
        }
        location = /clearkey { default_type application/json; return 200 '$clearkey_license'; }
        location = /origin-status { origin_status; allow 127.0.0.1; deny all; }
    }
}
CONF
"$root/build/current/sbin/nginx" -p "$demo" -c "$demo/nginx.conf" -e "$demo/logs/error.log"

# A live channel: ffmpeg pushes the 720p rendition with English audio in real time, looping,
# as a Smooth encoder would (one chunked POST to Streams(encoder1)).
base="http://127.0.0.1:$port"
nohup ffmpeg -v error -re -stream_loop -1 -i "$media/ladder-video-720.mp4" \
  -re -stream_loop -1 -i "$media/ladder-audio-eng.mp4" -map 0:v -map 1:a -c copy \
  -movflags +isml+delay_moov -f ismv "$base/live/channel1.isml/Streams(encoder1)" \
  >"$demo/logs/encoder.log" 2>&1 </dev/null &
echo $! > "$demo/logs/encoder.pid"
# The low-latency channel: ffmpeg encodes the 360p rendition as a low-latency encoder does (no
# B-frames, a key frame every 2 s) and pushes chunked CMAF, half-second chunks, a POST per track.
cmaf=empty_moov+default_base_moof+cmaf+frag_keyframe
nohup ffmpeg -v error -re -stream_loop -1 -i "$media/ladder-video-360.mp4" \
  -re -stream_loop -1 -i "$media/ladder-audio-eng.mp4" \
  -map 0:v -c:v libx264 -preset veryfast -tune zerolatency -g 50 -keyint_min 50 -sc_threshold 0 \
  -movflags $cmaf -frag_duration 500000 -f mp4 "$base/live/lowlatency.isml/Streams(video.cmfv)" \
  -map 1:a -c copy -movflags $cmaf -frag_duration 500000 -f mp4 \
  "$base/live/lowlatency.isml/Streams(audio.cmfa)" \
  >"$demo/logs/encoder-ll.log" 2>&1 </dev/null &
echo $! > "$demo/logs/encoder-ll.pid"

cat <<MSG

ngx-origin demo is running ($("$root/build/current/sbin/nginx" -v 2>&1 | sed 's/.*: //'), logs in build/demo/logs):

  player page        $base/                       (DASH, HLS fMP4 and TS, Smooth, progressive; with subtitles)
  MPEG-DASH          $base/media/demo.ism/.mpd
  HLS (MPEG-TS)      $base/media/demo.ism/.m3u8
  HLS (fMP4)         $base/media/demo.ism/.m3u8?hls_fmp4
  Smooth Streaming   $base/media/demo.ism/Manifest
  HDS                $base/media/demo.ism/.f4m
  progressive MP4    $base/media/progressive.mp4
  bare MP4 as DASH   $base/media/progressive.mp4/.mpd
  encrypted          $base/?p=/media/demo-drm.ism   (DASH with ClearKey, HLS with AES-128; demo keys)
  ad cues (SCTE-35)  $base/?p=/media/demo-ads.ism   (HLS date ranges, DASH events, a Smooth sparse stream)

  live channel       $base/?p=/live/channel1.isml      (the player page, playing the live channel)
  live DASH / HLS    $base/live/channel1.isml/.mpd   $base/live/channel1.isml/.m3u8
  live Smooth        $base/live/channel1.isml/Manifest
  channel state      $base/live/channel1.isml/state   (and /archive, /statistics?format=json)
  low-latency live   $base/?p=/live/lowlatency.isml    (buttons "LL-HLS (hls.js, …)", "LL-DASH (dash.js, …)")
  LL-HLS playlist    $base/live/lowlatency.isml/.m3u8?hls_fmp4
  LL-DASH MPD        $base/live/lowlatency.isml/.mpd
  push your own      ffmpeg -re -i in.mp4 -c copy -movflags +isml -f ismv '$base/live/mine.isml/Streams(enc)'
  the server manifest   build/media/demo.ism   (ismtool inspect / create / route / package)
  the module's counters $base/origin-status   (?format=prometheus)

stop it with: scripts/demo.sh stop
MSG
