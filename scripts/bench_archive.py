"""Archives that stay fast: the time of a live MPD right after a new fragment, and the worker's
memory, for a channel whose archive holds N fragments (`archiving` on, no `archive_length`).

For each N a channel is made the way an encoder makes it (its init segment and one fragment
POSTed), then its track's records file is replaced by N records of 2-second fragments ending
now, written as the archive writer writes them (tests/helpers/archive.py `lengthen`): the
newest 64 point at real fragments (the one ingested, its `tfdt` moved), the older ones at that
fragment's bytes in hour-long data files (hard links of one file), never read by a live
manifest, only counted, as a long archive's are.

Then a fresh nginx (one worker) answers: the first MPD (the worker reads the channel for the
first time), then, `--rounds` times, a new fragment is POSTed by HTTP (real ingest) and the MPD
asked for right after with curl: its `time_total`. Then, each after a new fragment too, the
Live API's `archive` report twice (the first visits every record), and last the worker's memory
(VmRSS, and RssAnon: its own, without page cache mappings).

    python scripts/bench_archive.py [--records 10,100000,1000000,4000000] [--rounds 10]
                                    [--module PATH]   # another build, e.g. the one before
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))

from bench import rss_kb  # noqa: E402
from bench_live import small_stream  # noqa: E402
from harness import Nginx, builds  # noqa: E402
from helpers.archive import lengthen  # noqa: E402
from helpers.live import shift_fragment  # noqa: E402

MEDIA = ROOT / "build" / "media"


def origin(build, module: Path | None) -> Nginx:
    n = Nginx(build, workers=1, module=module or build.module)
    live = n.root / "live"
    live.mkdir(exist_ok=True)
    live.chmod(0o777)
    return n


def start(n: Nginx) -> None:
    n.start("""
        location /live/ {
            usp_handle_ism;
            client_max_body_size 0;
        }""")


def post(port: int, path: str, body: bytes) -> int:
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("POST", path, body=body)
    r = c.getresponse()
    r.read()
    c.close()
    return r.status


def curl_time(url: str) -> tuple[int, float]:
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}",
                          url], capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]), float(out[1]) * 1000


def run(build, module: Path | None, count: int, rounds: int) -> dict:
    init, fragments = small_stream(loops=1)
    fragment = fragments[0]
    n = origin(build, module)
    try:
        (n.root / "live" / "a.isml").write_text(
            '<?xml version="1.0" encoding="utf-8"?>\n'
            '<smil xmlns="http://www.w3.org/2001/SMIL20/Language"><head>'
            '<meta name="archiving" content="true"/></head><body/></smil>\n')
        (n.root / "live" / "a.isml").chmod(0o666)
        start(n)
        ingest = "/live/a.isml/Streams(video.cmfv)"
        assert post(n.port, ingest, init) == 200
        assert post(n.port, ingest, fragment) == 200
        n.stop()
        archive = n.root / "live" / "a.isml.archive"
        track = next(p for p in archive.iterdir() if (p / "records").exists())
        made = time.perf_counter()
        dur = lengthen(track, init, fragment, count)
        made = time.perf_counter() - made
        start(n)
        url = n.url("/live/a.isml/.mpd")
        status, first_ms = curl_time(url)
        assert status == 200, status
        times = []
        for j in range(rounds):
            assert post(n.port, ingest, shift_fragment(fragment, (count + j) * dur)) == 200
            status, ms = curl_time(url)
            assert status == 200, status
            times.append(ms)
        text = n.get("/live/a.isml/.mpd").text
        assert "<S " in text
        # The Live API's report of the ranges the archive holds, each after a new fragment: the
        # worker's first (every record is visited) and its next.
        reports = []
        for j in range(rounds, rounds + 2):
            assert post(n.port, ingest, shift_fragment(fragment, (count + j) * dur)) == 200
            status, ms = curl_time(n.url("/live/a.isml/archive"))
            assert status == 200, status
            reports.append(ms)
        worker = n.worker_pids()[0]
        return {
            "records": count + rounds + 2,
            "made_s": made,
            "first_ms": first_ms,
            "p50_ms": statistics.median(times),
            "max_ms": max(times),
            "archive_ms": reports,
            "rss_mb": rss_kb(worker, "VmRSS:") / 1024,
            "anon_mb": rss_kb(worker, "RssAnon:") / 1024,
        }
    finally:
        n.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", default="10,100000,1000000,4000000")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--module", type=Path, help="the module to measure (default: build/'s)")
    a = ap.parse_args()
    if a.module:
        a.module = a.module.resolve()
    build = next(b for b in builds() if "1.28" in b.name)
    MEDIA.mkdir(parents=True, exist_ok=True)
    print(f"module: {a.module or build.module}")
    for count in [int(x) for x in a.records.split(",")]:
        r = run(build, a.module, count, a.rounds)
        print(f"{count:>9} records: first MPD {r['first_ms']:8.1f} ms; MPD after a new fragment "
              f"p50 {r['p50_ms']:7.2f} ms, max {r['max_ms']:7.2f} ms ({a.rounds} rounds); "
              f"archive report {r['archive_ms'][0]:6.1f} ms, next {r['archive_ms'][1]:6.1f} ms; "
              f"worker VmRSS {r['rss_mb']:6.1f} MB, RssAnon {r['anon_mb']:6.1f} MB "
              f"(archive made in {r['made_s']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
