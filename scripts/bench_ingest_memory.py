"""Bounded ingest memory: the figures of docs/BENCHMARKS.md "Bounded ingest memory".

1. Event-loop stall: one nginx worker takes a POST of one 113 MB fragment (init + moof + mdat,
   sent as fast as the loopback takes it) while a probe client asks the same worker for a
   1-byte static file every millisecond on a keep-alive connection. Reported: the probe's
   slowest answer and its p99 during the POST, the same without a POST, and the POST's time.
2. Worker memory: 8 connections each upload a 200 MB fragment at 10 MB/s (about 20 s each,
   all at once); the worker's peak RSS (VmHWM) over the run, and its RSS before.

nginx runs on CPU 0, this script on CPU 1. The fragments are made without encoding (tests/helpers/live.py `synthetic_fragment`): ingest
checks boxes, not samples. `--module PATH` measures another build of the module (the one
before a change) in the same nginx.

    python scripts/bench_ingest_memory.py [--module PATH] [--skip stall|rss]
"""

from __future__ import annotations

import argparse
import os
import http.client
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from harness import Nginx, builds  # noqa: E402
from helpers.live import cmaf_pieces, fragment_head, live_dir  # noqa: E402

LOCATION = """
        location /live/ {
            usp_handle_ism;
            client_max_body_size 0;
        }"""
PIECE = 256 << 10


def newest_build():
    """The newest nginx under build/ (ORIGIN_NGINX_VERSIONS picks another)."""
    return builds()[-1]


def start(module: Path | None) -> Nginx:
    build = newest_build()
    # nginx on CPU 0, this script (probe and uploads) on CPU 1, as scripts/bench_live.py does.
    n = Nginx(build, workers=1, module=module or build.module, wrapper=["taskset", "-c", "0"])
    live_dir(n)
    (n.root / "tiny").write_bytes(b"x")
    n.start(LOCATION, log_level="warn")
    return n


def status_of(n: Nginx, key: str) -> int:
    pid = n.worker_pids()[0]
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) << 10
    raise RuntimeError(f"no {key}")


def post_fragment(n: Nginx, stream: str, payload: int, rate: float | None, start_s: int,
                  out: dict) -> None:
    """One chunked POST: init, a fragment head announcing `payload` bytes, then the payload
    (zeros) in pieces, at `rate` bytes per second if given."""
    init, _ = cmaf_pieces()
    samples = 100
    head = fragment_head(init, start=start_s, samples=samples, sample_size=payload // samples)
    zeros = bytes(PIECE)
    s = socket.create_connection(("127.0.0.1", n.port), timeout=120)
    began = time.monotonic()
    try:
        s.sendall(f"POST /live/bench.isml/Streams({stream}) HTTP/1.1\r\nHost: x\r\n"
                  "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode())
        for piece in (init, head):
            s.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
        left = samples * (payload // samples)
        sent = 0
        while left:
            p = zeros[:min(PIECE, left)]
            s.sendall(b"%x\r\n" % len(p) + p + b"\r\n")
            left -= len(p)
            sent += len(p)
            if rate:
                ahead = sent / rate - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)
        s.sendall(b"0\r\n\r\n")
        line = s.makefile("rb").readline().split()
        out["status"] = int(line[1]) if len(line) > 1 else None
    finally:
        out["seconds"] = time.monotonic() - began
        s.close()


def probe(n: Nginx, stop: threading.Event, latencies: list[float]) -> None:
    """GET /tiny every millisecond on one keep-alive connection."""
    c = http.client.HTTPConnection("127.0.0.1", n.port, timeout=30)
    while not stop.is_set():
        t0 = time.perf_counter()
        c.request("GET", "/tiny")
        r = c.getresponse()
        r.read()
        latencies.append(time.perf_counter() - t0)
        time.sleep(0.001)
    c.close()


def summary(latencies: list[float]) -> str:
    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[int(len(ms) * 0.99) - 1] if ms else 0
    return f"max {ms[-1]:.1f} ms, p99 {p99:.2f} ms, median {statistics.median(ms):.2f} ms, n={len(ms)}"


def stall(module: Path | None, size: int) -> None:
    n = start(module)
    try:
        for label, post in (("no POST", False), (f"one {size >> 20} MB fragment", True)):
            latencies: list[float] = []
            stop = threading.Event()
            t = threading.Thread(target=probe, args=(n, stop, latencies))
            t.start()
            out: dict = {}
            if post:
                post_fragment(n, "stall.cmfv", size, None, 10, out)
            else:
                time.sleep(3)
            stop.set()
            t.join()
            extra = f"; POST answered {out['status']} in {out['seconds']:.2f} s" if post else ""
            print(f"  probe, {label}: {summary(latencies)}{extra}")
        print(f"  worker RSS after: {status_of(n, 'VmRSS') >> 20} MB, peak {status_of(n, 'VmHWM') >> 20} MB")
    finally:
        n.stop()
        n.cleanup()


def rss(module: Path | None, uploads: int, size: int, rate: float) -> None:
    n = start(module)
    try:
        before = status_of(n, "VmRSS")
        outs = [{} for _ in range(uploads)]
        threads = [threading.Thread(target=post_fragment,
                                    args=(n, f"u{k}.cmfv", size, rate, 10, outs[k]))
                   for k in range(uploads)]
        most = before
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            most = max(most, status_of(n, "VmRSS"))
            time.sleep(0.05)
        for t in threads:
            t.join()
        peak = status_of(n, "VmHWM")
        statuses = sorted(str(o.get("status")) for o in outs)
        seconds = max(o.get("seconds", 0) for o in outs)
        print(f"  {uploads} x {size >> 20} MB at {rate / (1 << 20):.0f} MB/s each: worker RSS "
              f"before {before >> 20} MB, peak (VmHWM) {peak >> 20} MB, highest sampled "
              f"{most >> 20} MB; statuses {' '.join(statuses)}; {seconds:.1f} s")
    finally:
        n.stop()
        n.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--module", type=Path, help="the module to measure (default: build/'s)")
    ap.add_argument("--skip", action="append", default=[], choices=["stall", "rss"])
    ap.add_argument("--stall-mb", type=int, default=113)
    ap.add_argument("--uploads", type=int, default=8)
    ap.add_argument("--upload-mb", type=int, default=200)
    ap.add_argument("--rate-mb", type=float, default=10)
    a = ap.parse_args()
    os.sched_setaffinity(0, {1})
    print(f"nginx: {newest_build().nginx}, module: {a.module or newest_build().module}")
    if "stall" not in a.skip:
        print("1. event-loop stall")
        stall(a.module, a.stall_mb << 20)
    if "rss" not in a.skip:
        print("2. worker memory")
        rss(a.module, a.uploads, a.upload_mb << 20, a.rate_mb * (1 << 20))


if __name__ == "__main__":
    main()
