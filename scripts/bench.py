"""End-to-end benchmark: worker CPU per request of the module against nginx serving the same
bytes as static files, measured in the same run.

nginx runs one worker pinned to CPU 0, wrk is pinned to CPU 1. The figure that counts is the
worker's CPU time (utime + stime from /proc) per request, since the load generator shares the
machine; req/s is printed too. Usage (from scripts/bench.sh):

    python scripts/bench.py [--seconds 10] [--media build/media/long-2h.mp4] [--module PATH]

`--module` measures another build of the module (say, the commit before a change, built in
a worktree) in the same nginx, for before-and-after tables from one sitting.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from harness import Nginx, builds  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_kb(pid: int, field: str = "RssAnon:") -> int:
    """RssAnon is the worker's own memory; RssFile counts mapped source pages, which are the
    page cache shared with every process, not memory the worker holds."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def wrk(url_list: list[str], seconds: int, base: str) -> tuple[int, float]:
    script = Path("/tmp/origin-bench.lua")
    paths = ",".join(f'"{u}"' for u in url_list)
    script.write_text(f"""
local paths = {{{paths}}}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1])
end
""")
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t", "1", "-c", "8", "-d", f"{seconds}s", "-s", str(script), base],
        capture_output=True, text=True, check=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    if "Non-2xx" in out:
        raise SystemExit(f"benchmark saw errors:\n{out}")
    return requests, rps


def measure(n: Nginx, urls: list[str], seconds: int) -> tuple[float, float, int]:
    worker = n.worker_pids()[0]
    before = cpu_seconds(worker)
    requests, rps = wrk(urls, seconds, n.url("/"))
    used = cpu_seconds(worker) - before
    return used / requests * 1e6, rps, requests


def syscalls_per_request(n: Nginx, urls: list[str]) -> float:
    """System calls the worker makes per request (strace -c), over one keep-alive connection:
    the count nginx-vod-module is known for (one writev per frame) and sendfile-per-range
    would inflate."""
    import http.client
    worker = n.worker_pids()[0]
    out = Path("/tmp/origin-bench-strace.txt")
    tracer = subprocess.Popen(["strace", "-c", "-f", "-p", str(worker), "-o", str(out)],
                              stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    conn = http.client.HTTPConnection("127.0.0.1", int(n.url("/").split(":")[2].split("/")[0]))
    for u in urls:
        conn.request("GET", u)
        r = conn.getresponse()
        r.read()
        assert r.status == 200, (u, r.status)
    conn.close()
    time.sleep(0.3)
    tracer.send_signal(2)
    tracer.wait()
    total = next(line for line in out.read_text().splitlines() if line.rstrip().endswith("total"))
    return int(total.split()[3]) / len(urls)


def video_segment_times(mpd: str) -> list[int]:
    """The start time of every segment of the first (video) adaptation set of an MPD with a
    SegmentTimeline."""
    times, t = [], 0
    for m in re.finditer(r'<S (?:t="(\d+)" )?d="(\d+)"(?: r="(\d+)")?/>',
                         mpd.split('contentType="audio"')[0]):
        if m.group(1):
            t = int(m.group(1))
        for _ in range(int(m.group(3) or 0) + 1):
            times.append(t)
            t += int(m.group(2))
    return times


def first_request_ms(n: Nginx, path: str) -> float:
    t = time.perf_counter()
    r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", n.url(path)],
                       capture_output=True, text=True, check=True).stdout.split()
    assert r[0] == "200", r
    return float(r[1]) * 1000


def place_media(n: Nginx, media: Path, symlink: bool = False) -> None:
    """The title as v/long.mp4 under the server root (a hard link when the disk allows; with
    `symlink`, a symbolic link: a new hard link changes the file's ctime, so its identity,
    which the index store's runs must keep)."""
    (n.root / "v").mkdir(mode=0o755)
    target = n.root / "v" / "long.mp4"
    if symlink:
        target.symlink_to(media)
        return
    if media.stat().st_dev == n.root.stat().st_dev:
        os.link(media, target)
    else:
        shutil.copy(media, target)
    target.chmod(0o644)


def cold_start_ms(build, media: Path, module: Path, path: str = "/v/long.mp4/.mpd",
                  store: Path | None = None) -> float:
    """Wall time of the first request of `path` from a freshly started nginx (its worker has
    no index in memory; with `store`, an `origin_index_store` there)."""
    n = Nginx(build, workers=1, module=module, wrapper=["taskset", "-c", "0"])
    try:
        place_media(n, media, symlink=store is not None)
        extra = f"origin_index_store {store};" if store else ""
        n.start(r"location ~ \.(ism|isml|mp4)(/|$) { usp_handle_ism; }",
                http_extra=f"sendfile on; access_log off; {extra}")
        return first_request_ms(n, path)
    finally:
        n.cleanup()


def store_rows(build, media: Path, module: Path) -> list[tuple[str, str, str]]:
    """First manifests after a restart with an index store: warm (the entry written by an
    earlier nginx of the same title: same inode) and empty; medians of 5 fresh starts."""
    rows = []
    root = Path(tempfile.mkdtemp(prefix="origin-bench-store-"))
    root.chmod(0o777)
    try:
        for label, path in (("MPD", "/v/long.mp4/.mpd"), ("HLS playlist", "/v/long.mp4/.m3u8"),
                            ("Smooth manifest", "/v/long.mp4/Manifest")):
            warm, empty = [], []
            for k in range(5):
                fresh = root / f"empty-{label[0]}{k}"
                fresh.mkdir()
                fresh.chmod(0o777)
                empty.append(cold_start_ms(build, media, module, path, fresh))
                # The next start finds what this one wrote.
                warm.append(cold_start_ms(build, media, module, path, fresh))
            warm.sort()
            empty.sort()
            rows.append((f"first {label} after start, index store warm (median of 5)",
                         f"{warm[2]:.2f} ms", f"range {warm[0]:.2f}–{warm[-1]:.2f} ms"))
            rows.append((f"first {label} after start, index store empty (median of 5)",
                         f"{empty[2]:.2f} ms", f"range {empty[0]:.2f}–{empty[-1]:.2f} ms"))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return rows


def smaps_kb(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        out[name] = int(value.split()[0])
    return out


def four_worker_memory(build, media: Path, module: Path, store: Path | None) -> tuple[int, int]:
    """(private KB, PSS KB) summed over 4 workers once each has served the title's MPD and
    playlist (its index in every worker), with or without an index store."""
    n = Nginx(build, workers=4, module=module)
    try:
        place_media(n, media, symlink=True)
        extra = f"origin_index_store {store};" if store else ""
        n.start(r"location ~ \.(ism|isml|mp4)(/|$) { usp_handle_ism; add_header X-Worker $pid; }",
                http_extra=f"access_log off; {extra}")
        seen: set[str] = set()
        for _ in range(400):
            for path in ("/v/long.mp4/.mpd", "/v/long.mp4/.m3u8"):
                out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-D", "-", "-H",
                                      "Connection: close", n.url(path)],
                                     capture_output=True, text=True).stdout
                m = re.search(r"(?i)x-worker: (\d+)", out)
                if m:
                    seen.add(m.group(1))
            if len(seen) == 4:
                break
        private = pss = 0
        for pid in n.worker_pids():
            m = smaps_kb(pid)
            private += m["Private_Clean"] + m["Private_Dirty"]
            pss += m["Pss"]
        return private, pss
    finally:
        n.cleanup()


def slow_readers(n: Nginx, readers: int) -> tuple[str, str, str]:
    """Worker RSS growth while `readers` clients request one large TS segment and read nothing
    (each holds what the worker has not yet written): the memory a slow client costs."""
    import socket
    big = ROOT / "build" / "media" / "big-1080p.mp4"
    if not big.exists():
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=25",
             "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000", "-t", "6",
             "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-b:v", "20M",
             "-maxrate", "20M", "-bufsize", "20M", "-g", "50", "-keyint_min", "50",
             "-sc_threshold", "0", "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart",
             str(big)], check=True)
    target = n.root / "v" / "big.mp4"
    shutil.copy(big, target)
    target.chmod(0o644)
    master = subprocess.run(["curl", "-s", n.url("/v/big.mp4/.m3u8")], capture_output=True,
                            text=True).stdout
    variant = next(line for line in master.splitlines() if line and not line.startswith("#"))
    path = f"/v/big.mp4/{variant.removesuffix('.m3u8')}-1.ts"
    size = len(subprocess.run(["curl", "-s", n.url(path)], capture_output=True).stdout)
    worker = n.worker_pids()[0]
    before = rss_kb(worker)
    socks = []
    try:
        for _ in range(readers):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", int(n.url("/").split(":")[2].split("/")[0])))
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            socks.append(s)
        time.sleep(3)
        grown = rss_kb(worker) - before
    finally:
        for s in socks:
            s.close()
    time.sleep(1)
    after = rss_kb(worker) - before
    return (f"worker RSS growth, {readers} clients reading nothing of one {size / 1e6:.1f} MB "
            f"1080p TS segment", f"{grown / 1024:.1f} MB",
            f"{grown / readers:.0f} KB per client; {after / 1024:.1f} MB above the start "
            f"1 s after they left")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=6, help="per round of each segment row")
    ap.add_argument("--media", default=str(ROOT / "build" / "media" / "long-2h.mp4"))
    ap.add_argument("--segments", type=int, default=300, help="distinct segments to rotate over")
    ap.add_argument("--readers", type=int, default=100, help="slow readers of one TS segment")
    ap.add_argument("--module", type=Path, help="the module to measure (default: build/'s)")
    args = ap.parse_args()
    media = Path(args.media)
    build = next(b for b in builds() if b.version.startswith("1.28"))
    module = args.module or build.module
    n = Nginx(build, workers=1, module=module, wrapper=["taskset", "-c", "0"])
    try:
        place_media(n, media)
        n.start(r"""
            location /static/ { }
            location ~ \.(ism|isml|mp4)(/|$) { usp_handle_ism; }
            # The same title encrypted on request (keys from the location, as per-request
            # keys would come): CENC for DASH, AES-128 for HLS TS, SAMPLE-AES (cbcs) for fMP4.
            location ^~ /drm/ {
                alias html/v/;
                usp_handle_ism;
                origin_drm iss.key 10f2b3c4d5e6f708192a3b4c5d6e7f80:3a1c5e7f9b2d4f6081a3c5e7092b4d6f;
                origin_drm hls.key :3a1c5e7f9b2d4f6081a3c5e7092b4d6f;
                origin_drm hls.license_server_url /k;
            }
            location ^~ /cbcs/ {
                alias html/v/;
                usp_handle_ism;
                origin_drm hls.key 10f2b3c4d5e6f708192a3b4c5d6e7f80:3a1c5e7f9b2d4f6081a3c5e7092b4d6f;
                origin_drm hls_playout sample_aes;
                origin_drm hls.license_server_url skd://k;
            }
        """, http_extra="sendfile on; tcp_nopush on; access_log off;")
        rows = []
        # Manifests: the first request after start builds the index (cold), then warm. The
        # cold figure varies with what the machine does at that moment: five fresh starts.
        colds = [first_request_ms(n, '/v/long.mp4/.mpd')]
        for _ in range(4):
            colds.append(cold_start_ms(build, media, module))
        colds.sort()
        rows.append(("first MPD after start (2-hour title), median of 5 fresh starts",
                     f"{colds[2]:.2f} ms", f"range {colds[0]:.2f}–{colds[-1]:.2f} ms, curl wall time"))
        # A build from before the index store (`--module`) has no store rows.
        if b"origin_index_store" in Path(module).read_bytes():
            rows += store_rows(build, media, module)
            store = Path(tempfile.mkdtemp(prefix="origin-bench-mem-"))
            store.chmod(0o777)
            try:
                without = four_worker_memory(build, media, module, None)
                four_worker_memory(build, media, module, store)
                with_store = four_worker_memory(build, media, module, store)
            finally:
                shutil.rmtree(store, ignore_errors=True)
            rows.append(("4 workers after serving the title: private memory, no store / store",
                         f"{without[0] / 1024:.1f} / {with_store[0] / 1024:.1f} MB",
                         f"PSS {without[1] / 1024:.1f} / {with_store[1] / 1024:.1f} MB, "
                         "summed over workers"))
        mpd = subprocess.run(["curl", "-s", n.url("/v/long.mp4/.mpd")], capture_output=True, text=True).stdout
        times = video_segment_times(mpd)
        step = max(1, len(times) // args.segments)
        picks = times[::step][: args.segments]
        rep = re.search(r'Representation id="(video=\d+)"', mpd).group(1)
        dash_urls = [f"/v/long.mp4/dash/long-{rep}-{t}.dash" for t in picks]
        numbers = [times.index(t) + 1 for t in picks]
        hls_urls = [f"/v/long.mp4/hls/long-{rep}-{k}.m4s" for k in numbers]
        ts_urls = [f"/v/long.mp4/long-{rep}-{k}.ts" for k in numbers]
        mss_urls = [f"/v/long.mp4/QualityLevels({rep.split('=')[1]})/Fragments(video={t})" for t in picks]

        # Static baseline: the very bytes of the module's segments, as files.
        def snapshot(urls: list[str], sub: str, ext: str) -> list[str]:
            d = n.root / "static" / sub
            d.mkdir(mode=0o755, parents=True)
            out = []
            for i, u in enumerate(urls):
                body = subprocess.run(["curl", "-s", n.url(u)], capture_output=True, check=True).stdout
                f = d / f"seg-{i}.{ext}"
                f.write_bytes(body)
                f.chmod(0o644)
                out.append(f"/static/{sub}/seg-{i}.{ext}")
            return out

        (n.root / "static").mkdir(mode=0o755)
        static_urls = snapshot(dash_urls, "fmp4", "m4s")
        ts_static_urls = snapshot(ts_urls, "ts", "ts")

        os.sync()  # the snapshots' dirty pages are written back before anything is timed
        # Each row is measured in three rounds that alternate between the rows, and the
        # median is reported: shared machines drift by more than the differences measured.
        segment_rows = [("static 2 s fMP4 segment (baseline)", static_urls, "fmp4"),
                        ("DASH 2 s video segment", dash_urls, "fmp4"),
                        ("HLS fMP4 2 s video segment", hls_urls, "fmp4"),
                        ("Smooth 2 s video fragment", mss_urls, "fmp4"),
                        ("DASH 2 s video segment, CENC (AES-CTR)",
                         [u.replace("/v/", "/drm/", 1) for u in dash_urls], "fmp4"),
                        ("HLS fMP4 2 s video segment, SAMPLE-AES (cbcs)",
                         [u.replace("/v/", "/cbcs/", 1) for u in hls_urls], "fmp4"),
                        ("static TS segment (baseline)", ts_static_urls, "ts"),
                        ("HLS TS 2 s video segment", ts_urls, "ts"),
                        ("HLS TS 2 s video segment, AES-128",
                         [u.replace("/v/", "/drm/", 1) for u in ts_urls], "ts")]
        measure(n, static_urls + ts_static_urls, 2)  # warm-up
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in segment_rows}
        for _ in range(3):
            for name, urls, _ in segment_rows:
                us, rps, _ = measure(n, urls, args.seconds)
                samples[name].append((us, rps))
        medians = {name: sorted(v)[1] for name, v in samples.items()}
        baseline = {"fmp4": medians["static 2 s fMP4 segment (baseline)"][0],
                    "ts": medians["static TS segment (baseline)"][0]}
        for name, urls, kind in segment_rows:
            us, rps = medians[name]
            spread = ", ".join(f"{u:.0f}" for u, _ in samples[name])
            calls = syscalls_per_request(n, urls[:50]) if shutil.which("strace") else float("nan")
            rows.append((name, f"{us:.0f} µs",
                         f"{rps:.0f} req/s, {us / baseline[kind]:.2f}x (rounds: {spread} µs), "
                         f"{calls:.1f} syscalls/request"))
        # The title with ad cues (a 30-second break every 5 minutes: 48 cues in a cue track)
        # against the same title without, both as server manifests.
        cue_list = [{"time": t, "out": True, "id": k, "duration": 30} for k, t in
                    enumerate(range(60, 7200, 300))]
        cue_list += [{"time": c["time"] + 30, "out": False, "id": c["id"]} for c in cue_list]
        (n.root / "v" / "breaks.json").write_text(json.dumps(cue_list))
        ismtool = str(ROOT / "target" / "release" / "ismtool")
        v = n.root / "v"
        subprocess.run([ismtool, "cues", str(v / "breaks.json"), "--duration", "7200", "-o",
                        str(v / "breaks.mp4")], check=True, capture_output=True)
        for name, extra in [("plain.ism", []), ("ads.ism", [str(v / "breaks.mp4")]),
                            ("inband.ism", [str(v / "breaks.mp4"), "--mpd.events=both"])]:
            subprocess.run([ismtool, "create", "-o", str(v / name), str(v / "long.mp4"), *extra],
                           check=True, capture_output=True)
        for f in v.iterdir():
            f.chmod(0o644)
        # A build from before ad cues (`--module`) has no cue rows.
        with_cues = b"SCTE35-OUT" in subprocess.run(
            ["curl", "-s", n.url(f"/v/ads.ism/ads-{rep}.m3u8")], capture_output=True).stdout
        cue_rows = [] if not with_cues else [
                    ("warm MPD", "plain", "/.mpd"), ("warm MPD", "ads", "/.mpd"),
                    ("warm HLS media playlist", "plain", f"/plain-{rep}.m3u8"),
                    ("warm HLS media playlist", "ads", f"/ads-{rep}.m3u8")]
        for what, name, path in cue_rows:
            url = f"/v/{name}.ism{path}"
            body = subprocess.run(["curl", "-s", n.url(url)], capture_output=True).stdout
            us, rps, _ = measure(n, [url], max(3, args.seconds // 2))
            label = "with 48 cues" if name == "ads" else "without cues"
            rows.append((f"{what} (2-hour .ism, {label})", f"{us:.0f} µs",
                         f"{rps:.0f} req/s, {len(body) // 1024} KB"))
        seg_rows = [("plain", "without cues"),
                    ("inband", "with cues in band (mpd_events=both)")] if with_cues else []
        seg_samples: dict[str, list[float]] = {name: [] for name, _ in seg_rows}
        for _ in range(3):
            for name, _ in seg_rows:
                urls = [u.replace("/v/long.mp4/dash/long-", f"/v/{name}.ism/dash/{name}-")
                        for u in dash_urls]
                us, _, _ = measure(n, urls, args.seconds)
                seg_samples[name].append(us)
        for name, label in seg_rows:
            us = sorted(seg_samples[name])[1]
            spread = ", ".join(f"{u:.0f}" for u in seg_samples[name])
            rows.append((f"DASH 2 s video segment (2-hour .ism, {label})", f"{us:.0f} µs",
                         f"{us / baseline['fmp4']:.2f}x (rounds: {spread} µs)"))
        for name, path in [("warm MPD (2-hour title)", "/v/long.mp4/.mpd"),
                           ("warm HLS media playlist (2-hour title)", f"/v/long.mp4/long-{rep}.m3u8"),
                           ("warm Smooth manifest (2-hour title)", "/v/long.mp4/Manifest")]:
            body = subprocess.run(["curl", "-s", n.url(path)], capture_output=True).stdout
            us, rps, _ = measure(n, [path], max(3, args.seconds // 2))
            rows.append((name, f"{us:.0f} µs", f"{rps:.0f} req/s, {len(body) // 1024} KB"))
        # Every segment of the title in every format, then the worker's RSS.
        bitrate = rep.split("=")[1]
        every = [f"/v/long.mp4/dash/long-{rep}-{t}.dash" for t in times] + \
                [f"/v/long.mp4/hls/long-{rep}-{k + 1}.m4s" for k in range(len(times))] + \
                [f"/v/long.mp4/long-{rep}-{k + 1}.ts" for k in range(len(times))] + \
                [f"/v/long.mp4/QualityLevels({bitrate})/Fragments(video={t})" for t in times]
        measure(n, every, max(8, args.seconds))
        w = n.worker_pids()[0]
        rows.append(("worker RSS (anonymous) after every DASH, fMP4-HLS, TS and Smooth segment of the 2-hour title",
                     f"{rss_kb(w) / 1024:.1f} MB",
                     f"plus {rss_kb(w, 'RssFile:') / 1024:.0f} MB of mapped source pages (page cache)"))
        rows.append(slow_readers(n, args.readers))
        print("| measurement | worker CPU / time | notes |")
        print("|---|---|---|")
        for r in rows:
            print(f"| {r[0]} | {r[1]} | {r[2]} |")
    finally:
        n.cleanup()


if __name__ == "__main__":
    main()
