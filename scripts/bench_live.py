"""Live benchmark: what the issue asks to measure, against a real nginx with the module.

1. Latency: from a fragment's last byte (a per-segment CMAF POST) to its first appearance in
   an MPD served by the other worker (2 workers; every answer names its worker).
2. Ingest capacity: one worker, pinned to CPU 0, ingesting C channels of 6 Mbit/s in real time
   (a 2-second fragment per channel every 2 s, per-segment POSTs) while a client polls their
   manifests; the worker's CPU share, the fragments acknowledged, the slowest acknowledgement.
3. Live manifest CPU: worker CPU per request of a live channel's MPD / HLS playlist with a
   30-second window, against a VOD manifest of the same length, in the same run (wrk).
5. Low latency under load: a low-latency channel's chunks pushed on one chunked POST (one
   every 0.1 s, timestamps in order) to a 2-worker nginx that also ingests C channels of
   6 Mbit/s in real time; for each chunk, `--held` blocking reloads for its part wait, and an
   LL-DASH request streams the segment being produced: from the chunk's send to each held
   reload's answer and to the streamed chunk's arrival (p50, p99, max).
4. Stalls: one worker (CPU 0) ingesting C channels of 6 Mbit/s in real time while a client
   asks it for an unrelated VOD segment every 20 ms: the p50, p99 and max latency of those
   requests without ingest, with it, and with it on slow storage (every sync made
   `--sync-ms` longer by tests/support/slow_sync.c, preloaded). `--module` measures another
   build of the module (the one before a change) in the same nginx.

    python scripts/bench_live.py [--channels 50] [--seconds 20] [--held 20] [--skip …]
                                 [--module PATH]
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))

from bench import cpu_seconds, measure  # noqa: E402
from harness import Nginx, builds, slow_storage  # noqa: E402
from helpers.live import shift_fragment, split_cmaf  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "progressive.mp4"
MEDIA = ROOT / "build" / "media"


def cmaf(path: Path, args: list[str]) -> tuple[bytes, list[bytes]]:
    """A CMAF video stream made by ffmpeg (cached), as its init segment and fragments."""
    if not path.exists():
        subprocess.run(["ffmpeg", "-v", "error", *args, "-an", "-movflags",
                        "empty_moov+separate_moof+default_base_moof+cmaf+frag_keyframe",
                        "-f", "mp4", "-y", str(path)], check=True)
    return split_cmaf(path.read_bytes())


def small_stream(loops: int) -> tuple[bytes, list[bytes]]:
    return cmaf(MEDIA / f"live-small-{loops}.cmfv",
                ["-stream_loop", str(loops), "-i", str(FIXTURE), "-c", "copy"])


def six_megabit_stream() -> tuple[bytes, list[bytes]]:
    """20 s of 1280x720 at 6 Mbit/s (constant rate), 2-second GOPs."""
    return cmaf(MEDIA / "live-6m.cmfv",
                ["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25", "-t", "20",
                 "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "6M", "-minrate", "6M",
                 "-maxrate", "6M", "-bufsize", "3M", "-g", "50", "-keyint_min", "50",
                 "-sc_threshold", "0", "-x264-params", "nal-hrd=cbr"])


MODULE: Path | None = None


def origin(build, workers: int, wrapper=None, extra: str = "") -> Nginx:
    # The release module (not the test-hooks one), unless --module names another.
    n = Nginx(build, workers=workers, wrapper=wrapper, module=MODULE or build.module)
    live = n.root / "live"
    live.mkdir()
    live.chmod(0o777)
    n.start("""
        location /live/ {
            usp_handle_ism;
            origin_live_auto_create on;
            client_max_body_size 0;
            add_header X-Worker $pid always;
        }""" + extra, main_extra="worker_rlimit_nofile 8192;", worker_connections=4096)
    return n


def post(conn: http.client.HTTPConnection, path: str, body: bytes) -> tuple[int, str]:
    conn.request("POST", path, body=body)
    r = conn.getresponse()
    r.read()
    return r.status, r.getheader("X-Worker", "")


def segments_in(mpd: str) -> int:
    import re
    count = 0
    for element in re.findall(r"<S [^>]*/>", mpd):
        r = re.search(r' r="(\d+)"', element)
        count += 1 + (int(r.group(1)) if r else 0)
    return count


def latency(build, fragments_to_send: int = 80) -> list[float]:
    n = origin(build, workers=2)
    try:
        init, fragments = small_stream(loops=fragments_to_send // 2 + 1)
        path = "/live/lat.isml/Streams(video.cmfv)"
        ingest = http.client.HTTPConnection("127.0.0.1", n.port)
        assert post(ingest, path, init)[0] == 200
        assert post(ingest, path, fragments[0])[0] == 200
        out = []
        for k, fragment in enumerate(fragments[1:fragments_to_send], start=2):
            ingest.request("POST", path, body=fragment)
            sent = time.perf_counter()  # the body is written when request() returns
            response = ingest.getresponse()
            response.read()
            post_worker = response.getheader("X-Worker")
            while True:
                c = http.client.HTTPConnection("127.0.0.1", n.port)
                c.request("GET", "/live/lat.isml/.mpd")
                r = c.getresponse()
                body = r.read().decode()
                worker = r.getheader("X-Worker")
                c.close()
                if worker != post_worker and segments_in(body) >= min(k, 15):
                    out.append((time.perf_counter() - sent) * 1000)
                    break
        return out
    finally:
        n.cleanup()


def real_time_encoder(n: Nginx, channel: str, k: int, init: bytes, fragments: list[bytes],
                      rounds: int, start: float, failures: list[str],
                      acks: list[float] | None = None) -> None:
    """One encoder of the `k`th channel: its init segment, then a fragment every 2 s from
    `start` (offset by a tenth of a second per channel, so 20 channels spread over the 2 s),
    each a POST of its own; `acks` collects how long each took."""
    conn = http.client.HTTPConnection("127.0.0.1", n.port, timeout=60)
    path = f"/live/{channel}.isml/Streams(video.cmfv)"
    try:
        post(conn, path, init)
        for r in range(rounds):
            due = start + 2 * r + (k % 20) * 0.1
            time.sleep(max(0.0, due - time.monotonic()))
            t0 = time.monotonic()
            status, _ = post(conn, path, fragments[r] if r < len(fragments)
                             else shifted(fragments, r))
            if acks is not None:
                acks.append(time.monotonic() - t0)
            if status != 200:
                failures.append(f"{channel}: {status}")
    except OSError as e:
        failures.append(f"{channel}: {e}")


def capacity(build, channels: int, seconds: int) -> dict:
    n = origin(build, workers=1, wrapper=["taskset", "-c", "0"])
    try:
        init, fragments = six_megabit_stream()
        worker = n.worker_pids()[0]
        acks: list[float] = []
        failures: list[str] = []
        rounds = seconds // 2
        start = time.monotonic() + 1.0

        def encoder(ch: int):
            real_time_encoder(n, f"c{ch}", ch, init, fragments, rounds, start, failures, acks)

        def viewer(stop: threading.Event, served: list[int]):
            conn = http.client.HTTPConnection("127.0.0.1", n.port, timeout=30)
            ch = 0
            while not stop.is_set():
                conn.request("GET", f"/live/c{ch % channels}.isml/.mpd")
                r = conn.getresponse()
                r.read()
                served.append(r.status)
                ch += 1
                time.sleep(0.01)

        before = cpu_seconds(worker)
        wall0 = time.monotonic()
        threads = [threading.Thread(target=encoder, args=(c,)) for c in range(channels)]
        stop, served = threading.Event(), []
        v = threading.Thread(target=viewer, args=(stop, served))
        for t in threads:
            t.start()
        v.start()
        for t in threads:
            t.join()
        stop.set()
        v.join()
        wall = time.monotonic() - wall0
        cpu = cpu_seconds(worker) - before
        return {
            "channels": channels,
            "fragments": len(acks),
            "failures": failures[:5],
            "cpu_share": cpu / wall,
            "ack_p50_ms": statistics.median(acks) * 1000 if acks else 0,
            "ack_max_ms": max(acks) * 1000 if acks else 0,
            "manifests_served": len(served),
            "mbit_per_s": sum(len(f) for f in fragments[:rounds]) * 8 / (2 * rounds) / 1e6,
        }
    finally:
        n.cleanup()


def stalls(build, channels: int, seconds: int, ingest: bool, sync_ms: int = 0) -> dict:
    """Latency of unrelated VOD segment requests on a worker ingesting `channels` channels."""
    wrapper = ["taskset", "-c", "0"]
    if sync_ms:
        wrapper = slow_storage(sync_ms) + wrapper
    vod_extra = """
        location /vod/ { usp_handle_ism; }"""
    n = origin(build, workers=1, wrapper=wrapper, extra=vod_extra)
    try:
        vod = n.root / "vod"
        vod.mkdir()
        (vod / "v.mp4").write_bytes(FIXTURE.read_bytes())
        for p in (vod, vod / "v.mp4"):
            p.chmod(0o755 if p.is_dir() else 0o644)
        segment = "/vod/v.mp4/dash/v-video=" + _dash_bitrate(n) + "-0.dash"
        assert n.get(segment).status_code == 200, segment
        init, fragments = six_megabit_stream()
        rounds = seconds // 2
        start = time.monotonic() + 1.0
        failures: list[str] = []

        def encoder(ch: int):
            real_time_encoder(n, f"s{ch}", ch, init, fragments, rounds, start, failures)

        threads = [threading.Thread(target=encoder, args=(c,)) for c in range(channels)] \
            if ingest else []
        for t in threads:
            t.start()
        probe = http.client.HTTPConnection("127.0.0.1", n.port, timeout=60)
        waits: list[float] = []
        time.sleep(max(0.0, start + 2 - time.monotonic()))
        end = start + 2 * rounds
        while time.monotonic() < end:
            t0 = time.perf_counter()
            try:
                probe.request("GET", segment)
                r = probe.getresponse()
                r.read()
                if r.status != 200:
                    failures.append(f"vod: {r.status}")
            except OSError as e:  # a worker blocked past the client's timeout
                failures.append(f"vod: {e}")
                probe.close()
                probe = http.client.HTTPConnection("127.0.0.1", n.port, timeout=60)
            waits.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.02)
        for t in threads:
            t.join()
        waits.sort()
        return {
            "requests": len(waits),
            "p50": statistics.median(waits),
            "p99": waits[min(len(waits) - 1, int(len(waits) * 0.99))],
            "max": waits[-1],
            "failures": failures[:5],
        }
    finally:
        n.cleanup()


def _dash_bitrate(n: Nginx) -> str:
    import re
    mpd = n.get("/vod/v.mp4/.mpd").text
    return re.search(r'Representation id="video=(\d+)"', mpd).group(1)


def shifted(fragments: list[bytes], k: int) -> bytes:
    """Fragment k of an endless stream made of the file's fragments, its times moved on
    (20 s per lap, at the 12 800 timescale ffmpeg gives 25 fps video)."""
    return shift_fragment(fragments[k % len(fragments)], k // len(fragments) * 20 * 12800)


def manifests(build, seconds: int) -> dict:
    n = origin(build, workers=1, wrapper=["taskset", "-c", "0"])
    try:
        init, fragments = small_stream(loops=7)  # 32 s: a 30-second window
        ingest = http.client.HTTPConnection("127.0.0.1", n.port)
        for body in [init, *fragments]:
            assert post(ingest, "/live/m.isml/Streams(video.cmfv)", body)[0] == 200
        # The same channel with ad cues: a 4-second break every 8 s, in an event message
        # track pushed beside it (one fragment per 2 s, as the DASH-IF ingest sends it).
        from helpers.events import event_track, splice_insert
        for body in [init, *fragments]:
            assert post(ingest, "/live/mc.isml/Streams(video.cmfv)", body)[0] == 200
        cues = []
        for k, at in enumerate(range(2000, 32000, 8000)):
            cues.append((at, 4000, k + 1, splice_insert(k + 1, True, at / 1000, 4.0)))
            cues.append((at + 4000, None, k + 1, splice_insert(k + 1, False, at / 1000 + 4)))
        meta_init, meta_fragments = event_track(1000, 32000, 2000, cues)
        # A build from before ad cues (`--module`) refuses the track: no cue rows then.
        with_cues = all(post(ingest, "/live/mc.isml/Streams(scte35.cmfm)", body)[0] == 200
                        for body in [meta_init, *meta_fragments])
        # The same media as VOD: the stream as one file, in a server manifest.
        vod = n.root / "vod"
        vod.mkdir()
        (vod / "m.cmfv").write_bytes((MEDIA / "live-small-7.cmfv").read_bytes())
        subprocess.run([str(ROOT / "target" / "release" / "ismtool"), "create", "-o",
                        str(vod / "m.ism"), str(vod / "m.cmfv")], check=True,
                       capture_output=True)
        for p in vod.iterdir():
            p.chmod(0o644)
        n.stop()
        n.start(f"""
            location /live/ {{ usp_handle_ism; origin_live_auto_create on; client_max_body_size 0; }}
            location /vod/ {{ usp_handle_ism; }}""")
        live_variant = "/live/m.isml/m-video=" + _bitrate(n, "/live/m.isml/.m3u8") + ".m3u8"
        cues_variant = "/live/mc.isml/mc-video=" + _bitrate(n, "/live/mc.isml/.m3u8") + ".m3u8"
        vod_variant = "/vod/m.ism/m-video=" + _bitrate(n, "/vod/m.ism/.m3u8") + ".m3u8"
        assert not with_cues or "SCTE35-OUT" in n.get(cues_variant).text
        assert not with_cues or "<EventStream" in n.get("/live/mc.isml/.mpd").text
        out = {}
        for name, urls in [("live MPD", ["/live/m.isml/.mpd"]),
                           ("live MPD, cues", ["/live/mc.isml/.mpd"]),
                           ("VOD MPD", ["/vod/m.ism/.mpd"]),
                           ("live HLS playlist", [live_variant]),
                           ("live HLS, cues", [cues_variant]),
                           ("VOD HLS playlist", [vod_variant])]:
            if "cues" in name and not with_cues:
                continue
            us, rps, _ = measure(n, urls, seconds)
            out[name] = (us, rps)
        return out
    finally:
        n.cleanup()


def _bitrate(n: Nginx, master: str) -> str:
    text = n.get(master).text
    line = next(ln for ln in text.splitlines() if ln and not ln.startswith("#"))
    return line.rsplit("=", 1)[1].removesuffix(".m3u8")


def low_latency(build, channels: int, parts: int, held: int) -> dict:
    """See 5. in the module's text."""
    import asyncio
    import re

    from helpers.archive import timescale_of
    from test_live_low_latency import LL_CHANNEL, Encoder, chunked_cmaf, hint_of

    n = origin(build, workers=2)
    try:
        (n.root / "live" / "ll.isml").write_text(LL_CHANNEL)
        (n.root / "live" / "ll.isml").chmod(0o666)
        init, chunks = chunked_cmaf()
        # As many chunks as asked: the source's chunks again and again, each pass later by
        # the length of the ones before.
        ticks = timescale_of(init)
        first = _tfdt(chunks[0])
        length = _tfdt(chunks[-1]) + round(0.52 * ticks) - first
        stream = [shift_fragment(c, (k // len(chunks)) * length)
                  for k, c in ((k, chunks[k % len(chunks)]) for k in range(parts + 1))]
        load_init, load_fragments = six_megabit_stream()
        failures: list[str] = []
        start = time.monotonic() + 1.0
        rounds = max(2, int(parts * 0.1 / 2) + 3)
        loaders = [threading.Thread(target=real_time_encoder, daemon=True, args=(
            n, f"c{c}", c, load_init, load_fragments, rounds, start, failures))
            for c in range(channels)]
        for t in loaders:
            t.start()
        encoder = Encoder(n.url("/live/ll.isml/Streams(video.cmfv)"), init, stream[0])
        playlist = None
        for _ in range(200):
            master = http.client.HTTPConnection("127.0.0.1", n.port, timeout=10)
            master.request("GET", "/live/ll.isml/.m3u8?hls_fmp4")
            r = master.getresponse()
            text = r.read().decode()
            if r.status == 200:
                uri = next(line for line in text.splitlines() if line and line[0] != "#")
                playlist = "/live/ll.isml/" + uri.split("?")[0]
                break
            time.sleep(0.05)
        assert playlist, "no master playlist"

        def get(path: str) -> str:
            c = http.client.HTTPConnection("127.0.0.1", n.port, timeout=10)
            c.request("GET", path)
            return c.getresponse().read().decode()

        text = get(playlist)
        wakes: list[float] = []
        streamed: list[float] = []

        async def one_part(chunk: bytes, msn: int, part: int):
            path = f"{playlist}?_HLS_msn={msn}&_HLS_part={part}"
            conns = []
            for _ in range(held):
                reader, writer = await asyncio.open_connection("127.0.0.1", n.port)
                writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                             .encode())
                conns.append((reader, writer))
            await asyncio.sleep(0.05)
            sent = time.perf_counter()
            encoder.send(chunk)

            async def answered(reader):
                data = await reader.read()
                return time.perf_counter() - sent, data

            results = await asyncio.gather(*(answered(r) for r, _ in conns))
            for _, w in conns:
                w.close()
            return sent, results

        async def stream_reader(url_path: str, arrivals: list[float]):
            reader, writer = await asyncio.open_connection("127.0.0.1", n.port)
            writer.write(f"GET {url_path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                         .encode())
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                arrivals.append(time.perf_counter())
            writer.close()

        async def run():
            nonlocal text
            arrivals: list[float] = []
            streaming = None
            for chunk in stream[1:]:
                msn, part = hint_of(text)
                if streaming is None or streaming.done():
                    mpd = get("/live/ll.isml/.mpd")
                    rep = re.search(r'Representation id="([^"]+)"', mpd).group(1)
                    t = _last_start(mpd)
                    arrivals.clear()
                    streaming = asyncio.ensure_future(
                        stream_reader(f"/live/ll.isml/dash/ll-{rep}-{t}.dash", arrivals))
                    await asyncio.sleep(0.02)
                before = len(arrivals)
                sent, results = await one_part(chunk, msn, part)
                for waited, data in results:
                    if b" 200 " not in data[:16]:
                        failures.append(data[:40].decode(errors="replace"))
                    wakes.append(waited)
                text = results[-1][1].split(b"\r\n\r\n", 1)[1].decode()
                if len(arrivals) > before:
                    streamed.append(arrivals[before] - sent)
                await asyncio.sleep(max(0.0, 0.1 - (time.perf_counter() - sent)))
            if streaming is not None:
                streaming.cancel()

        asyncio.run(run())
        encoder.close()
        for t in loaders:
            t.join(timeout=1)

        def quantiles(xs: list[float]) -> tuple[float, float, float]:
            xs = sorted(x * 1000 for x in xs)
            return (statistics.median(xs), xs[min(len(xs) - 1, int(len(xs) * 0.99))], xs[-1])

        return {"parts": parts, "held": held, "wake": quantiles(wakes),
                "streamed": quantiles(streamed) if streamed else (0, 0, 0),
                "streamed_chunks": len(streamed), "failures": failures[:5]}
    finally:
        n.cleanup()


def _tfdt(fragment: bytes) -> int:
    at = fragment.find(b"tfdt")
    size = 8 if fragment[at + 4] == 1 else 4
    return int.from_bytes(fragment[at + 8:at + 8 + size], "big")


def _last_start(mpd: str) -> int:
    """The start of the video's last segment in an MPD ($Time$ SegmentTimeline)."""
    import re
    video = mpd.split('contentType="video"', 1)[1].split("</AdaptationSet>", 1)[0]
    t = 0
    for m in re.finditer(r'<S (?:t="(\d+)" )?d="(\d+)"(?: r="(\d+)")?/>', video):
        if m.group(1):
            t = int(m.group(1))
        last = t
        t += int(m.group(2)) * (int(m.group(3) or 0) + 1)
        if m.group(3):
            last = t - int(m.group(2))
    return last


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--channels", type=int, default=50)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--skip", default="",
                    help="comma-separated: latency,capacity,manifests,stalls,lowlatency")
    ap.add_argument("--held", type=int, default=20,
                    help="blocking reloads held for each part (low-latency rows)")
    ap.add_argument("--parts", type=int, default=200,
                    help="chunks pushed for the low-latency rows")
    ap.add_argument("--sync-ms", type=int, default=100,
                    help="added time of each sync for the slow-storage stall rows")
    ap.add_argument("--module", type=Path, help="the module to measure (default: build/'s)")
    a = ap.parse_args()
    global MODULE
    MODULE = a.module
    build = next(b for b in builds() if "1.28" in b.name)
    MEDIA.mkdir(parents=True, exist_ok=True)
    skip = set(a.skip.split(","))
    if "latency" not in skip:
        lat = sorted(latency(build))
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        print(f"latency, fragment's last byte to the other worker's MPD, {len(lat)} fragments: "
              f"p50 {statistics.median(lat):.1f} ms, p99 {p99:.1f} ms, max {lat[-1]:.1f} ms")
    if "capacity" not in skip:
        r = capacity(build, a.channels, a.seconds)
        print(f"capacity: {r['channels']} channels x {r['mbit_per_s']:.1f} Mbit/s on one worker "
              f"(CPU 0): worker CPU {r['cpu_share'] * 100:.0f}% of a core, {r['fragments']} "
              f"fragments acknowledged (p50 {r['ack_p50_ms']:.0f} ms, max {r['ack_max_ms']:.0f} ms), "
              f"{r['manifests_served']} manifests served meanwhile, failures: {r['failures']}")
    if "stalls" not in skip:
        rows = [("no ingest", False, 0), (f"{a.channels} channels", True, 0),
                (f"{a.channels} channels, syncs +{a.sync_ms} ms", True, a.sync_ms)]
        for name, ingest, sync_ms in rows:
            r = stalls(build, a.channels, a.seconds, ingest, sync_ms)
            print(f"VOD segment latency on the ingesting worker, {name:32s}: "
                  f"p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms, max {r['max']:.2f} ms "
                  f"({r['requests']} requests) failures: {r['failures']}")
    if "lowlatency" not in skip:
        r = low_latency(build, a.channels, a.parts, a.held)
        w, st = r["wake"], r["streamed"]
        print(f"low latency, {r['parts']} chunks, {r['held']} held reloads each, "
              f"{a.channels} channels ingesting: chunk sent -> held reload answered p50 "
              f"{w[0]:.1f} ms, p99 {w[1]:.1f} ms, max {w[2]:.1f} ms; -> streamed LL-DASH "
              f"bytes p50 {st[0]:.1f} ms, p99 {st[1]:.1f} ms, max {st[2]:.1f} ms "
              f"({r['streamed_chunks']} chunks); failures: {r['failures']}")
    if "manifests" not in skip:
        for name, (us, rps) in manifests(build, 10).items():
            print(f"{name:20s} {us:8.1f} us worker CPU per request ({rps:.0f} req/s)")


if __name__ == "__main__":
    main()
