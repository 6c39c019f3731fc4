#!/usr/bin/env bash
# Writes ffprobe's packet list for every committed fixture: the reference the media index tests
# compare with (tests/fixtures/expected/<file>.packets.csv).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../tests/fixtures"
mkdir -p expected
for f in *.mp4 *.ismv *.isma *.cmfv *.cmfa; do
  ffprobe -v error -show_entries packet=stream_index,pts,dts,duration,size,pos,flags \
    -of csv=p=0 "$f" > "expected/$f.packets.csv"
done
