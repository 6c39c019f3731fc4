#!/usr/bin/env bash
# Makes the test media set with ffmpeg.
#
# usage: scripts/make-test-media.sh DIR [--small] [--long]
#
#   default   the full set: 10 s clips at 640x360 and a 3-rendition ladder up to 1280x720
#   --small   the same set at 2-4 s and tiny sizes (the committed fixtures in tests/fixtures)
#   --long    also the 2-hour long-form file for benchmarks (made by looping a 60 s encode
#             with stream copy, so it takes seconds of CPU, not hours)
#
# All video has a keyframe exactly every 2 s (GOP 50 at 25 fps, no scene-cut keyframes), so
# every format's segments line up. Existing files are kept: delete DIR to remake it.
#
# Files:
#   progressive.mp4          H.264 + AAC, faststart (moov first)
#   progressive-tail.mp4     the same with the moov at the end
#   smooth.ismv              H.264 + AAC in one Smooth/PIFF file (tfxd, no tfdt, mfra)
#   smooth-video.ismv, smooth-audio.isma     one track per file, as Smooth encoders write
#   cmaf-video.cmfv, cmaf-audio.cmfa         CMAF fragmented (frag_keyframe, default_base_moof)
#   ladder-video-{360,480,720}.mp4           video renditions (400k / 800k / 1500k)
#   ladder-audio-eng.mp4, ladder-audio-fra.mp4   AAC stereo 128k, language-tagged
#   ladder-*.ismv / ladder-audio-*.isma      the ladder as Smooth files
#   hevc.mp4                 H.265 (hvc1) + AAC
#   ac3.mp4                  H.264 + AC-3
#   subtitles-eng.vtt, subtitles-eng.ttml    text sidecars
#   subtitles-eng.mp4        TTML in MP4 (stpp)
#   long-2h.mp4              (--long) 2 hours, 1280x720, H.264 + AAC
set -euo pipefail

dir=${1:?usage: make-test-media.sh DIR [--small] [--long]}
shift
small=0
long=0
for a in "$@"; do
  case "$a" in
    --small) small=1 ;;
    --long) long=1 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done
command -v ffmpeg >/dev/null || { echo "ffmpeg not found (scripts/setup.sh installs it)" >&2; exit 1; }
mkdir -p "$dir"
cd "$dir"

if [ "$small" = 1 ]; then
  secs=4; size=320x180; vbr=200k
  ladder=("360 320x180 150k" "480 480x270 250k" "720 640x360 400k")
else
  secs=10; size=640x360; vbr=800k
  ladder=("360 640x360 400k" "480 854x480 800k" "720 1280x720 1500k")
fi

ff() { ffmpeg -hide_banner -loglevel error -nostdin -y "$@"; }
# make OUT ARGS...: runs ffmpeg only when OUT does not exist yet; writes atomically.
make() {
  local out=$1; shift
  [ -s "$out" ] && return 0
  local tmp
  tmp="$(dirname "$out")/.tmp-$(basename "$out")"
  ff "$@" "$tmp" && mv "$tmp" "$out"
  echo "made $dir/$out" >&2
}

gop=(-g 50 -keyint_min 50 -sc_threshold 0 -force_key_frames 'expr:gte(t,n_forced*2)')
x264=(-c:v libx264 -profile:v high -pix_fmt yuv420p -preset veryfast "${gop[@]}")
aac=(-c:a aac -b:a 128k -ac 2 -ar 48000)
frag=(-movflags +frag_keyframe+empty_moov+default_base_moof)

make progressive.mp4 -f lavfi -i "testsrc2=size=$size:rate=25" \
  -f lavfi -i "sine=frequency=1000:sample_rate=48000" -t "$secs" \
  "${x264[@]}" -b:v "$vbr" "${aac[@]}" -metadata:s:a:0 language=eng -movflags +faststart -f mp4
make progressive-tail.mp4 -i progressive.mp4 -c copy -f mp4
make smooth.ismv -i progressive.mp4 -c copy -f ismv
make smooth-video.ismv -i progressive.mp4 -map 0:v -c copy -f ismv
make smooth-audio.isma -i progressive.mp4 -map 0:a -c copy -frag_duration 2000000 -f ismv
make cmaf-video.cmfv -i progressive.mp4 -map 0:v -c copy "${frag[@]}" -f mp4
make cmaf-audio.cmfa -i progressive.mp4 -map 0:a -c copy -frag_duration 2000000 "${frag[@]}" -f mp4

for rung in "${ladder[@]}"; do
  read -r name res rate <<<"$rung"
  make "ladder-video-$name.mp4" -f lavfi -i "testsrc2=size=$res:rate=25" -t "$secs" \
    "${x264[@]}" -b:v "$rate" -maxrate "$rate" -bufsize "$rate" -an -movflags +faststart -f mp4
  make "ladder-video-$name.ismv" -i "ladder-video-$name.mp4" -c copy -f ismv
done
for lang in "eng 1000" "fra 440"; do
  read -r code freq <<<"$lang"
  make "ladder-audio-$code.mp4" -f lavfi -i "sine=frequency=$freq:sample_rate=48000" -t "$secs" \
    "${aac[@]}" -metadata:s:a:0 "language=$code" -movflags +faststart -f mp4
  make "ladder-audio-$code.isma" -i "ladder-audio-$code.mp4" -c copy -frag_duration 2000000 -f ismv
done

make hevc.mp4 -f lavfi -i "testsrc2=size=$size:rate=25" \
  -f lavfi -i "sine=frequency=1000:sample_rate=48000" -t "$secs" \
  -c:v libx265 -tag:v hvc1 -pix_fmt yuv420p -preset ultrafast \
  -x265-params "keyint=50:min-keyint=50:scenecut=0:log-level=error" -b:v "$vbr" \
  "${aac[@]}" -movflags +faststart -f mp4
make ac3.mp4 -f lavfi -i "testsrc2=size=$size:rate=25" \
  -f lavfi -i "sine=frequency=1000:sample_rate=48000" -t "$secs" \
  "${x264[@]}" -b:v "$vbr" -c:a ac3 -b:a 192k -ac 2 -movflags +faststart -f mp4

if [ ! -s subtitles-eng.vtt ]; then
  {
    echo "WEBVTT"
    echo
    for ((i = 0; i < secs; i += 2)); do
      printf '%02d:%02d:%02d.000 --> %02d:%02d:%02d.000\nCue %d: seconds %d to %d\n\n' \
        0 0 "$i" 0 0 "$((i + 2))" "$((i / 2 + 1))" "$i" "$((i + 2))"
    done
  } > subtitles-eng.vtt
  echo "made $dir/subtitles-eng.vtt" >&2
fi
make subtitles-eng.ttml -i subtitles-eng.vtt -c:s ttml -f ttml
make subtitles-eng.mp4 -i subtitles-eng.vtt -c:s ttml -metadata:s:s:0 language=eng -f mp4

if [ "$long" = 1 ] && [ ! -s long-2h.mp4 ]; then
  make long-60s.mp4 -f lavfi -i "testsrc2=size=1280x720:rate=25" \
    -f lavfi -i "sine=frequency=1000:sample_rate=48000" -t 60 \
    "${x264[@]}" -b:v 1500k -maxrate 1500k -bufsize 3000k "${aac[@]}" -movflags +faststart -f mp4
  # 120 loops of 60 s, stream copy; the moov (≈180 000 video and ≈337 000 audio samples) is
  # what the index and manifest benchmarks chew on.
  make long-2h.mp4 -stream_loop 119 -i long-60s.mp4 -c copy -t 7200 -movflags +faststart -f mp4
fi
chmod -R a+rX .
