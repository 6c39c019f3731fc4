"""Remote sources benchmark: what reading media from another HTTP server or from S3 costs the
origin, measured against the same title on local disk in the same run.

    python scripts/bench_remote.py [--seconds 6] [--media build/media/long-2h.mp4]

One origin worker, pinned to CPU 0, serves the 2-hour title three ways: from local disk, through
`ism_proxy_pass` from a plain nginx (static files, keepalive upstream) and, when s3s-fs is
installed, from S3 with SigV4. wrk and the backends share CPU 1. Rows:

- storage requests per first manifest, warm manifest and segment, counted at the backend, and
  the bytes a segment read brings beyond the segment's own samples (an interleaved MP4's span
  holds the other tracks' samples too);
- origin worker CPU per DASH segment, local vs nginx backend vs S3;
- one segment's latency with a backend that takes 20 ms per request;
- 1,000 concurrent segment requests on the one worker against that slow backend.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))

from bench import cpu_seconds, measure, video_segment_times  # noqa: E402
from faulty_backend import FaultyBackend  # noqa: E402
from harness import Nginx, builds, free_port  # noqa: E402

S3S_FS = Path.home() / ".cargo" / "bin" / "s3s-fs"
KEY, SECRET = "AKIABENCHMARK0000001", "bench/secret+key"
LOG_FORMAT = "log_format ranges '$uri|$http_range|$status|$body_bytes_sent';"


def link(media: Path, target: Path) -> None:
    target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    if media.stat().st_dev == target.parent.stat().st_dev:
        os.link(media, target)
    else:
        shutil.copy(media, target)
    target.chmod(0o644)


@contextlib.contextmanager
def s3s(data: Path):
    port = free_port()
    proc = subprocess.Popen(["taskset", "-c", "1", str(S3S_FS), "--host", "127.0.0.1", "--port",
                             str(port), "--access-key", KEY, "--secret-key", SECRET, str(data)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def log_lines(path: Path) -> list[tuple[str, str, int, int]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        uri, rng, status, sent = line.split("|")
        out.append((uri, rng, int(status), int(sent)))
    return out


def curl(url: str) -> tuple[int, bytes, float]:
    out = subprocess.run(["curl", "-s", "-o", "/tmp/origin-bench-body", "-w",
                          "%{http_code} %{time_total}", url], capture_output=True, text=True,
                         check=True).stdout.split()
    return int(out[0]), Path("/tmp/origin-bench-body").read_bytes(), float(out[1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument("--media", default=str(ROOT / "build" / "media" / "long-2h.mp4"))
    ap.add_argument("--segments", type=int, default=200)
    ap.add_argument("--concurrent", type=int, default=1000)
    ap.add_argument("--module", type=Path, help="the origin's module (default: build/'s)")
    args = ap.parse_args()
    media = Path(args.media)
    build = next(b for b in builds() if b.version.startswith("1.28"))
    backend = Nginx(build, workers=1, module=build.module, wrapper=["taskset", "-c", "1"])
    origin = Nginx(build, workers=1, module=args.module or build.module,
                   wrapper=["taskset", "-c", "0"])
    rows = []
    with contextlib.ExitStack() as stack:
        stack.callback(backend.cleanup)
        stack.callback(origin.cleanup)
        link(media, backend.root / "v" / "long.mp4")
        link(media, origin.root / "v" / "long.mp4")
        backend_log = backend.prefix / "logs" / "backend.log"
        backend.start(f"access_log {backend_log} ranges;",
                      http_extra=f"{LOG_FORMAT} sendfile on;")
        slow_root = backend.prefix / "slow"
        link(media, slow_root / "v" / "long.mp4")
        slow = stack.enter_context(FaultyBackend(slow_root, delay=0.020))
        # The CPU rows use the title's first 20 seconds: s3s-fs hashes a whole object on every
        # read (3 s for the 1.4 GB title), which would measure the test server, not the origin.
        short = backend.prefix / "short.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(media), "-t", "20", "-c", "copy",
                        "-movflags", "+faststart", str(short)], check=True)
        for root in [backend.root, origin.root]:
            link(short, root / "v" / "short.mp4")
        s3_port = None
        if S3S_FS.exists():
            link(short, backend.prefix / "s3" / "media" / "v" / "short.mp4")
            s3_port = stack.enter_context(s3s(backend.prefix / "s3"))
        s3_location = f"""
            location ^~ /s3/ {{
                usp_handle_ism;
                ism_proxy_pass http://s3/media/;
                s3_access_key {KEY};
                s3_secret_key {SECRET};
                s3_region us-east-1;
                proxy_http_version 1.1;
                proxy_set_header Connection "";
            }}""" if s3_port else ""
        s3_upstream = f"upstream s3 {{ server 127.0.0.1:{s3_port}; keepalive 32; }}" if s3_port else ""
        origin.start(f"""
            location ~ \\.(ism|isml|mp4)(/|$) {{ usp_handle_ism; }}
            location ^~ /remote/ {{
                usp_handle_ism;
                ism_proxy_pass http://storage/;
                proxy_http_version 1.1;
                proxy_set_header Connection "";
            }}
            location ^~ /slow/ {{
                usp_handle_ism;
                ism_proxy_pass http://127.0.0.1:{slow.port}/slow/;
                proxy_read_timeout 60s;
            }}
            {s3_location}""",
            http_extra=f"""sendfile on; tcp_nopush on; access_log off;
                upstream storage {{ server 127.0.0.1:{backend.port}; keepalive 32; }}
                {s3_upstream}""",
            main_extra="worker_rlimit_nofile 65536;",
            worker_connections=8192)

        # Storage requests, counted at the backend.
        def reads(path: str) -> list[tuple[str, str, int, int]]:
            before = len(log_lines(backend_log))
            status, _, _ = curl(origin.url(path))
            assert status == 200, path
            return log_lines(backend_log)[before:]

        first = reads("/remote/v/long.mp4/.mpd")
        rows.append(("storage requests, first MPD of the 2-hour title", str(len(first)),
                     f"{sum(r[3] for r in first) / 1e6:.2f} MB read: "
                     + ", ".join(r[1] for r in first)))
        rows.append(("storage requests, warm MPD / HLS playlist / Smooth manifest",
                     "/".join(str(len(reads(f"/remote/v/long.mp4/{e}")))
                              for e in [".mpd", ".m3u8", "Manifest"]), "within origin_remote_ttl"))
        # The TS I-frame playlist: one byte range per segment's key frame.
        master = curl(origin.url("/remote/v/long.mp4/.m3u8"))[1].decode()
        iframes = "/remote/v/long.mp4/" + re.search(r'URI="(keyframes/[^"]+)"', master).group(1)
        before = len(log_lines(backend_log))
        status, body, took = curl(origin.url(iframes))
        assert status == 200, iframes
        iframe_reads = log_lines(backend_log)[before:]
        rows.append(("storage requests, first TS I-frame playlist of the 2-hour title "
                     "(indexes cached)", str(len(iframe_reads)),
                     f"{took * 1000:.1f} ms, {body.count(b'BYTERANGE')} key frames"))
        mpd = curl(origin.url("/v/long.mp4/.mpd"))[1].decode()
        times = video_segment_times(mpd)
        step = max(1, len(times) // args.segments)
        picks = times[::step][: args.segments]
        rep = re.search(r'Representation id="(video=\d+)"', mpd).group(1)
        segs = [f"v/long.mp4/dash/long-{rep}-{t}.dash" for t in picks]
        seg_reads = reads("/remote/" + segs[len(segs) // 2])
        payload = len(curl(origin.url("/" + segs[len(segs) // 2]))[1])
        fetched = sum(r[3] for r in seg_reads)
        rows.append(("storage requests per DASH video segment", str(len(seg_reads)),
                     f"{fetched / 1e3:.0f} KB read for a {payload / 1e3:.0f} KB segment: the "
                     f"samples' span in the interleaved MP4 holds the audio too "
                     f"(+{(fetched - payload) / payload * 100:.0f}%)"))

        # Worker CPU per segment, alternating rounds, medians.
        kinds = [("local disk", "/"), ("nginx backend (ism_proxy_pass)", "/remote/")]
        if s3_port:
            kinds.append(("S3 (s3s-fs, SigV4)", "/s3/"))
        short_mpd = curl(origin.url("/v/short.mp4/.mpd"))[1].decode()
        short_times = video_segment_times(short_mpd)
        short_rep = re.search(r'Representation id="(video=\d+)"', short_mpd).group(1)
        short_segs = [f"v/short.mp4/dash/short-{short_rep}-{t}.dash" for t in short_times[:-1]]
        for name, prefix in kinds:  # warm the indexes and the object metadata; check
            for path in [f"{prefix}v/short.mp4/.mpd", f"{prefix}{short_segs[0]}"]:
                status, body, _ = curl(origin.url(path))
                if status != 200:
                    raise SystemExit(f"{name}: {path}: {status} {body[:200]!r}\n"
                                     f"{origin.log_text()[-3000:]}")
        measure(origin, [f"/remote/{s}" for s in short_segs], 2)
        samples: dict[str, list[tuple[float, float]]] = {k: [] for k, _ in kinds}
        for _ in range(3):
            for name, prefix in kinds:
                try:
                    samples[name].append(measure(origin, [f"{prefix}{s}" for s in short_segs],
                                                 args.seconds)[:2])
                except ZeroDivisionError:
                    raise SystemExit(f"{name}: no request answered in {args.seconds} s\n"
                                     f"{origin.log_text()[-4000:]}")
        local_us = sorted(samples["local disk"])[1][0]
        for name, _ in kinds:
            us, rps = sorted(samples[name])[1]
            rows.append((f"worker CPU per DASH 2 s video segment ({len(short_segs)} rotating), {name}",
                         f"{us:.0f} µs",
                         f"{us / local_us:.2f}x local disk, {rps:.0f} req/s "
                         f"(rounds: {', '.join(f'{u:.0f}' for u, _ in samples[name])} µs)"))

        # Latency against a backend that takes 20 ms per request.
        curl(origin.url("/slow/v/long.mp4/.mpd"))
        lat = []
        before = len(slow.requests)
        for s in segs[:30]:
            status, _, took = curl(origin.url(f"/slow/{s}"))
            assert status == 200
            lat.append(took * 1000)
        reads_made = slow.requests[before:]
        # The same reads straight from the backend: what the backend itself takes.
        direct = []
        for _, rel, rng in reads_made:
            out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-H", f"Range: {rng}", "-w",
                                  "%{time_total}", f"http://127.0.0.1:{slow.port}/slow/{rel}"],
                                 capture_output=True, text=True, check=True).stdout
            direct.append(float(out) * 1000)
        lat.sort()
        direct.sort()
        med, dmed = lat[len(lat) // 2], direct[len(direct) // 2]
        rows.append(("DASH segment latency, backend answering in 20 ms", f"{med:.1f} ms",
                     f"median of {len(lat)} (min {lat[0]:.1f}, max {lat[-1]:.1f} ms); "
                     f"{len(reads_made) / len(lat):.1f} backend reads each; the same reads "
                     f"straight from the backend: {dmed:.1f} ms, so the origin adds "
                     f"{med - dmed:.1f} ms"))

        # Many concurrent requests on one worker against the slow backend.
        script = Path("/tmp/origin-bench-remote.lua")
        script.write_text("local paths = {" + ",".join(f'"/slow/{s}"' for s in segs) + "}\n"
                          "local i = 0\nrequest = function()\n  i = i + 1\n"
                          "  return wrk.format(\"GET\", paths[(i % #paths) + 1])\nend\n")
        worker = origin.worker_pids()[0]
        cpu_before = cpu_seconds(worker)
        out = subprocess.run(["taskset", "-c", "1", "wrk", "-t", "1", "-c", str(args.concurrent),
                              "-d", "8s", "--timeout", "30s", "--latency", "-s", str(script),
                              origin.url("/")], capture_output=True, text=True, check=True).stdout
        done = int(re.search(r"(\d+) requests in", out).group(1))
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        timeouts = re.search(r"timeout (\d+)", out)
        p50 = re.search(r"50%\s+([\d.]+\w+)", out).group(1)
        p99 = re.search(r"99%\s+([\d.]+\w+)", out).group(1)
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        rows.append((f"{args.concurrent} concurrent DASH segment requests, one worker, 20 ms backend",
                     f"{rps:.0f} req/s",
                     f"{done} answered in 8 s, {errors.group(1) if errors else 0} errors, "
                     f"{timeouts.group(1) if timeouts else 0} timeouts; latency p50 {p50}, "
                     f"p99 {p99}; worker CPU {(cpu_seconds(worker) - cpu_before):.1f} s"))
        print("| measurement | figure | notes |")
        print("|---|---|---|")
        for r in rows:
            print(f"| {r[0]} | {r[1]} | {r[2]} |")


if __name__ == "__main__":
    main()
