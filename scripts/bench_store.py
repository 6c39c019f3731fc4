#!/usr/bin/env python3
"""The index store over a catalogue: N distinct small titles (copies of one 10-second title,
each its own file), each asked for once (its MPD) right after nginx starts, with the store
off, empty and warm (written by the run before). Prints the total time, the time per title,
and the metadata bytes the worker read: the titles' `ftyp` + `moov` when it indexes them, the
store's entries when it reads them.

    scripts/bench_store.py [--titles 10000] [--module PATH]
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from harness import Nginx, builds  # noqa: E402


def small_title(path: Path) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc=size=64x36:rate=25", "-f", "lavfi", "-i",
                    "sine=frequency=440:sample_rate=48000", "-t", "10", "-c:v", "libx264",
                    "-preset", "ultrafast", "-g", "50", "-c:a", "aac", "-b:a", "16k",
                    "-movflags", "+faststart", str(path)], check=True)


def metadata_bytes(path: Path) -> int:
    """Bytes of the boxes the index builder reads: everything but `mdat`."""
    data = path.read_bytes()
    at, total = 0, 0
    while at + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[at:at + 8])
        if size == 1:
            size = struct.unpack(">Q", data[at + 8:at + 16])[0]
        if size < 8:
            break
        if kind != b"mdat":
            total += size
        at += size
    return total


def run(build, module: Path, media: Path, titles: int, store: Path | None) -> float:
    """Seconds to fetch every title's MPD once, from a freshly started nginx."""
    n = Nginx(build, workers=1, module=module)
    try:
        (n.root / "v").symlink_to(media)
        extra = f"origin_index_store {store} max_size=4g;" if store else ""
        n.start(r"location /v/ { usp_handle_ism; }", http_extra=f"access_log off; {extra}")
        conn = http.client.HTTPConnection("127.0.0.1", n.port, timeout=30)
        started = time.perf_counter()
        for k in range(titles):
            conn.request("GET", f"/v/t{k:05d}.mp4/.mpd")
            r = conn.getresponse()
            r.read()
            assert r.status == 200, (k, r.status)
        took = time.perf_counter() - started
        conn.close()
        return took
    finally:
        n.cleanup()  # SIGQUIT: the worker finishes its store writes before it exits


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--titles", type=int, default=10000)
    ap.add_argument("--module", type=Path)
    args = ap.parse_args()
    build = next(b for b in builds() if b.version.startswith("1.28"))
    module = args.module or build.module
    work = Path(tempfile.mkdtemp(prefix="origin-bench-catalogue-"))
    work.chmod(0o755)
    try:
        media = work / "media"
        media.mkdir(mode=0o755)
        small_title(work / "title.mp4")
        for k in range(args.titles):
            shutil.copyfile(work / "title.mp4", media / f"t{k:05d}.mp4")
        per_title = metadata_bytes(work / "title.mp4")
        # The copies' writeback would otherwise compete with the store's file creations.
        os.sync()
        store = work / "store"
        store.mkdir()
        store.chmod(0o777)
        off = run(build, module, media, args.titles, None)
        empty = run(build, module, media, args.titles, store)
        entries = list(store.glob("*/*.idx"))
        stored = sum(p.stat().st_size for p in entries)
        os.sync()
        warm = run(build, module, media, args.titles, store)
        n = args.titles
        print(f"| {n} titles, one MPD each after a start | total | per title | metadata read |")
        print("|---|---|---|---|")
        print(f"| store off | {off:.2f} s | {off / n * 1e3:.2f} ms | {per_title * n / 1e6:.1f} MB "
              f"(ftyp + moov, {per_title} B per title) |")
        print(f"| store empty (writes {len(entries)} entries) | {empty:.2f} s | "
              f"{empty / n * 1e3:.2f} ms | {per_title * n / 1e6:.1f} MB |")
        print(f"| store warm | {warm:.2f} s | {warm / n * 1e3:.2f} ms | {stored / 1e6:.1f} MB "
              f"(entries, {stored // max(len(entries), 1)} B each) |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
