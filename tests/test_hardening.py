"""Hardening: what a hostile or unlucky file system, URL or server manifest must not do to a
worker.

- A source truncated in place while it is served (mmap on, HTTP and HTTPS, every format) never
  kills a worker; complete answers are always the right bytes.
- FIFOs are refused like nginx's static module refuses them, without blocking the worker.
- `disable_symlinks` (on, if_not_owner, from=) is honoured for manifests and every source, as
  nginx's static module honours it, with and without `open_file_cache`.
- File names nginx logs for the module's file buffers are NUL-terminated.
- Variant names no manifest lists are refused; every listed one is served.
- Track names cannot inject playlist lines, and names with URL-special characters still give
  URLs that resolve and decode.
- ETags follow in-place payload changes, pread never logs "header already sent", over-long path
  segments are 404, `.vtt` of a video track is 404, a slow reader costs no copy of the segment,
  and log lines keep their reason and do not repeat prefixes.

No timing asserts: loops are bounded in time and count, only to keep the run short.
"""

from __future__ import annotations

import errno
import http.client
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness import Nginx, self_signed_cert, with_mdhd_language
from helpers.media import FIXTURES, ISMTOOL, LADDER, MPD_NS, ffmpeg_made, frame_hashes

MODULE_LOCATION = r"location ~ \.(ism|isml|mp4)(/|$) { usp_handle_ism; }"
NOBODY = 65534

# Truncation churn: how long each format is churned, how often the file flips, and a bound on
# the requests each client makes (the time bound is what normally ends a loop).
CHURN_SECONDS = 10.0
FLIP_SECONDS = 0.02
MAX_REQUESTS_PER_CLIENT = 20000
CLIENT_TIMEOUT = 10.0

INSECURE = ssl.create_default_context()
INSECURE.check_hostname = False
INSECURE.verify_mode = ssl.CERT_NONE


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory):
    """A self-signed certificate for the HTTPS listeners, made once per session."""
    return self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def big_media() -> Path:
    """6 s of 1080p H.264 at 20 Mbit/s (2-s GOP) with AAC: a 2-s TS segment is over 4 MB. Made
    once for every worker and kept (helpers.media.cached); tests copy it before they change it."""
    return ffmpeg_made("big.mp4", [
        "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=25",
        "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000", "-t", "6",
        "-c:v", "libx264", "-profile:v", "high", "-pix_fmt", "yuv420p", "-preset", "ultrafast",
        "-b:v", "20M", "-maxrate", "20M", "-bufsize", "20M", "-g", "50", "-keyint_min", "50",
        "-sc_threshold", "0", "-c:a", "aac", "-b:a", "128k", "-ac", "2",
        "-movflags", "+faststart"])


# ------------------------------------------------------------------------------------ helpers
def media_dir(n: Nginx, name: str = "v") -> Path:
    d = n.root / name
    d.mkdir(mode=0o755, parents=True, exist_ok=True)
    return d


def put(dest: Path, src: Path | bytes | str) -> Path:
    """Writes a world-readable copy of a file (or bytes / text) at `dest`."""
    dest.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    if isinstance(src, Path):
        shutil.copy(src, dest)
    elif isinstance(src, str):
        dest.write_text(src)
    else:
        dest.write_bytes(src)
    dest.chmod(0o644)
    return dest


def ismtool_create(ism: Path, sources: list[Path]) -> Path:
    subprocess.run([str(ISMTOOL), "create", "-o", str(ism), *[str(s) for s in sources]],
                   check=True, capture_output=True, timeout=60)
    ism.chmod(0o644)
    return ism


def ladder(directory: Path, ism_name: str = "ladder.ism") -> Path:
    """The ladder fixtures and a server manifest over them in `directory`."""
    for f in LADDER:
        put(directory / f, FIXTURES / f)
    return ismtool_create(directory / ism_name, [directory / f for f in LADDER])


@dataclass
class Reply:
    status: int | None
    body: bytes = b""
    complete: bool = False
    error: str | None = None
    headers: dict = field(default_factory=dict)


def fetch(port: int, path: str, *, tls: bool = False, timeout: float = CLIENT_TIMEOUT,
          headers: dict | None = None) -> Reply:
    """One GET on a fresh connection. `complete` is true when the body has all the bytes
    Content-Length announced; a connection closed early gives what arrived."""
    if tls:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=INSECURE)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        try:
            conn.request("GET", path, headers=headers or {})
            resp = conn.getresponse()
        except TimeoutError:
            return Reply(None, error="timeout")
        except (OSError, http.client.HTTPException) as e:
            return Reply(None, error=f"no response: {e!r}")
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        length = hdrs.get("content-length")
        try:
            body = resp.read()
        except http.client.IncompleteRead as e:
            return Reply(resp.status, e.partial, False, "cut short", hdrs)
        except TimeoutError:
            return Reply(resp.status, b"", False, "timeout", hdrs)
        except (OSError, http.client.HTTPException) as e:
            return Reply(resp.status, b"", False, f"cut short: {e!r}", hdrs)
        complete = length is not None and len(body) == int(length)
        return Reply(resp.status, body, complete, None if complete else "cut short", hdrs)
    finally:
        conn.close()


def get_ok(n: Nginx, path: str, *, tls: bool = False) -> bytes:
    r = fetch(n.ssl_port if tls else n.port, path, tls=tls)
    assert r.status == 200 and r.complete, (path, r.status, r.error, r.body[:300])
    return r.body


def resolve(base_path: str, ref: str) -> str:
    """A reference from a manifest resolved against the manifest's path, as a browser does:
    characters not allowed in a URL are percent-encoded, `%` escapes are kept as written."""
    joined = urllib.parse.urljoin("http://h" + base_path, ref)
    parts = urllib.parse.urlsplit(joined)
    safe = "/%:@!$&'()*+,;=-._~"
    path = urllib.parse.quote(parts.path, safe=safe)
    query = urllib.parse.quote(parts.query, safe=safe + "?")
    return path + (f"?{query}" if query else "")


def playlist_uris(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def tag_uris(text: str, tag: str) -> list[str]:
    return [m.group(1) for line in text.splitlines() if line.startswith(tag)
            for m in [re.search(r'URI="([^"]*)"', line)] if m]


def mpd_segments(n: Nginx, mpd_path: str, *, tls: bool = False) -> dict[str, list[str]]:
    """Every init and media segment path of an MPD, by Representation@id (SegmentTemplate with
    $RepresentationID$ and $Time$ or $Number$, with or without a SegmentTimeline)."""
    mpd = ET.fromstring(get_ok(n, mpd_path, tls=tls))
    period = mpd.find("d:Period", MPD_NS)
    base = mpd_path
    base_url = period.find("d:BaseURL", MPD_NS)
    if base_url is not None:
        base = resolve(mpd_path, base_url.text)
    duration = mpd.get("mediaPresentationDuration", "PT0S")
    total_s = float(re.fullmatch(r"PT(?:(\d+)H)?(?:(\d+)M)?([\d.]+)S", duration).group(3) or 0)
    out = {}
    for aset in period.findall("d:AdaptationSet", MPD_NS):
        tmpl = aset.find("d:SegmentTemplate", MPD_NS)
        for rep in aset.findall("d:Representation", MPD_NS):
            t = rep.find("d:SegmentTemplate", MPD_NS)
            t = tmpl if t is None else t
            rid = rep.get("id")
            start_number = int(t.get("startNumber", "1"))
            timeline = t.find("d:SegmentTimeline", MPD_NS)
            times = []
            if timeline is not None:
                now = 0
                for s in timeline.findall("d:S", MPD_NS):
                    now = int(s.get("t", now))
                    for _ in range(int(s.get("r", "0")) + 1):
                        times.append(now)
                        now += int(s.get("d"))
            else:
                count = int(-(-total_s * int(t.get("timescale", "1")) // int(t.get("duration"))))
                times = [None] * count

            def expand(s: str, number: int | None = None, time_: int | None = None) -> str:
                s = s.replace("$RepresentationID$", rid).replace("$$", "$")
                if number is not None:
                    s = s.replace("$Number$", str(number))
                if time_ is not None:
                    s = s.replace("$Time$", str(time_))
                return resolve(base, s)

            urls = [expand(t.get("initialization"))]
            for k, when in enumerate(times):
                urls.append(expand(t.get("media"), start_number + k, when))
            out[rid] = urls
    return out


def smooth_fragments(n: Nginx, manifest_path: str) -> dict[str, list[str]]:
    """Every fragment path of a Smooth manifest, by `<StreamIndex Name>=<Bitrate>`."""
    root = ET.fromstring(get_ok(n, manifest_path))
    out = {}
    for s in root.findall("StreamIndex"):
        times, t = [], 0
        for c in s.findall("c"):
            t = int(c.get("t", t))
            for _ in range(int(c.get("r", 1))):
                times.append(t)
                t += int(c.get("d"))
        for q in s.findall("QualityLevel"):
            out[f"{s.get('Name')}={q.get('Bitrate')}"] = [
                resolve(manifest_path, s.get("Url").replace("{bitrate}", q.get("Bitrate"))
                        .replace("{Bitrate}", q.get("Bitrate")).replace("{start time}", str(st))
                        .replace("{start_time}", str(st)))
                for st in times]
    return out


# ------------------------------------------------------------------- 1. truncation in place
def second(seq: list[str]) -> str:
    assert len(seq) >= 2, seq
    return seq[1]


def churn_url(n: Nginx, fmt: str, base: str) -> str:
    """The URL the churn fetches, found from the manifests the module returns. `base` is the
    presentation (`/v/p.mp4` or `/v/ladder.ism`)."""
    if fmt in ("dash", "frag-dash"):
        reps = mpd_segments(n, f"{base}/.mpd")
        video = [rid for rid in reps if rid.startswith("video=")]
        # The highest video bitrate (the ladder's 720 file: the one the churn truncates).
        rid = max(video, key=lambda r: int(r.split("=")[1]))
        return reps[rid][2]  # [0] is the init segment: the second media segment
    if fmt == "smooth":
        frags = smooth_fragments(n, f"{base}/Manifest")
        key = max((k for k in frags if k.startswith("video=")), key=lambda k: int(k.split("=")[1]))
        return second(frags[key])
    if fmt in ("ts", "fmp4", "keyframes"):
        master_path = f"{base}/.m3u8" + ("?hls_fmp4" if fmt == "fmp4" else "")
        master = get_ok(n, master_path).decode()
        if fmt == "keyframes":
            return resolve(master_path, tag_uris(master, "#EXT-X-I-FRAME-STREAM-INF")[-1])
        variant = resolve(master_path, playlist_uris(master)[-1])
        return resolve(variant, second(playlist_uris(get_ok(n, variant).decode())))
    if fmt == "aac":
        master_path = f"{base}/.m3u8"
        master = get_ok(n, master_path).decode()
        audio = [line for line in master.splitlines()
                 if line.startswith("#EXT-X-MEDIA:TYPE=AUDIO")]
        playlist = resolve(master_path, re.search(r'URI="([^"]*)"', audio[0]).group(1))
        seg = second(playlist_uris(get_ok(n, playlist).decode()))
        # Packed audio is the same segment as `.aac` (ID3 timestamp + ADTS).
        return resolve(playlist, re.sub(r"\.ts(\?|$)", r".aac\1", seg))
    raise ValueError(fmt)


@dataclass
class Tally:
    ok: int = 0
    cut: int = 0
    status_4xx: int = 0
    status_5xx: int = 0
    failures: list = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.ok + self.cut + self.status_4xx + self.status_5xx + len(self.failures)

    def add(self, r: Reply, want: bytes) -> None:
        if r.error == "timeout":
            self.failures.append(f"no answer within {CLIENT_TIMEOUT} s")
        elif r.status is None:
            self.cut += 1  # connection closed before any status line
        elif r.status == 200:
            if not r.complete:
                self.cut += 1
            elif r.body == want:
                self.ok += 1
            else:
                self.failures.append(
                    f"complete 200 with other bytes ({len(r.body)} bytes, reference {len(want)})")
        elif 400 <= r.status < 500:
            self.status_4xx += 1
        elif r.status >= 500:
            self.status_5xx += 1
        else:
            self.failures.append(f"status {r.status}")

    def merged(self, others: list["Tally"]) -> "Tally":
        for o in others:
            self.ok += o.ok
            self.cut += o.cut
            self.status_4xx += o.status_4xx
            self.status_5xx += o.status_5xx
            self.failures += o.failures
        return self

    def __str__(self) -> str:
        fails = sorted(set(self.failures))[:5]
        return (f"ok={self.ok} cut={self.cut} 4xx={self.status_4xx} 5xx={self.status_5xx} "
                f"failures={len(self.failures)} {fails}")


def flip_in_place(path: Path, data: bytes, stop: threading.Event) -> int:
    """Truncates `path` to half its size and writes the original bytes back in place (same
    inode, no rename), alternately every FLIP_SECONDS until `stop`. Returns the flips made."""
    flips = 0
    with open(path, "r+b", buffering=0) as f:
        try:
            while not stop.is_set():
                f.truncate(len(data) // 2)
                flips += 1
                if stop.wait(FLIP_SECONDS):
                    break
                f.seek(0)
                f.write(data)
                flips += 1
                stop.wait(FLIP_SECONDS)
        finally:
            f.seek(0)
            f.write(data)
            f.truncate(len(data))
    return flips


def hammer(port: int, path: str, tls: bool, want: bytes, tally: Tally, stop: threading.Event,
           deadline: float) -> None:
    for _ in range(MAX_REQUESTS_PER_CLIENT):
        if stop.is_set() or time.monotonic() > deadline:
            return
        tally.add(fetch(port, path, tls=tls), want)


def workers_of(n: Nginx) -> list[int]:
    """The worker pids once all of them run (the port answers before the master forks)."""
    for _ in range(100):
        pids = n.worker_pids()
        if len(pids) == n.workers:
            return pids
        time.sleep(0.05)
    raise AssertionError(f"expected {n.workers} workers, found {n.worker_pids()}")


def churn(n: Nginx, path: str, source: Path, control: str, *, seconds: float = CHURN_SECONDS,
          clients_per_scheme: int = 2) -> list[str]:
    """Fetches `path` over HTTP and HTTPS while `source` is truncated and restored in place, and
    `control` (an untouched file) alongside. Returns what went wrong (empty when the module
    kept every guarantee)."""
    want = get_ok(n, path)
    assert get_ok(n, path, tls=True) == want
    want_control = get_ok(n, control)
    assert get_ok(n, control, tls=True) == want_control
    workers = workers_of(n)
    data = source.read_bytes()
    stop = threading.Event()
    deadline = time.monotonic() + seconds
    # One tally per client thread, merged at the end: (scheme, port, tls, url, reference).
    clients = [(scheme, n.ssl_port if scheme == "https" else n.port, scheme == "https", path,
                want, Tally()) for scheme in ("http", "https") for _ in range(clients_per_scheme)]
    clients += [("control", port, tls, control, want_control, Tally())
                for port, tls in [(n.port, False), (n.ssl_port, True)]]
    threads = [threading.Thread(target=hammer, args=(port, url, tls, ref, tally, stop, deadline))
               for _, port, tls, url, ref, tally in clients]
    flips = []
    flipper = threading.Thread(target=lambda: flips.append(flip_in_place(source, data, stop)))
    flipper.start()
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join(timeout=seconds + 4 * CLIENT_TIMEOUT)
    finally:
        stop.set()
        flipper.join(timeout=30)
        for t in threads:
            t.join(timeout=2 * CLIENT_TIMEOUT)
    assert source.read_bytes() == data
    tallies = {scheme: Tally().merged([c[-1] for c in clients if c[0] == scheme])
               for scheme in ("http", "https")}
    control_tally = Tally().merged([c[-1] for c in clients if c[0] == "control"])
    summary = f"{path}: http {tallies['http']}; https {tallies['https']}; " \
              f"control {control_tally}; flips {flips}"
    print(summary)
    problems = []
    crashes = n.crashes()
    if crashes:
        problems.append(f"{len(crashes)} worker crashes, e.g. {crashes[0]}")
    if n.worker_pids() != workers:
        problems.append(f"worker pids changed: {workers} -> {n.worker_pids()}")
    for scheme, tally in tallies.items():
        if tally.total == 0 or tally.failures:
            problems.append(f"{scheme}: {tally}")
    if control_tally.failures or control_tally.cut or control_tally.status_4xx or \
            control_tally.status_5xx or not control_tally.ok:
        problems.append(f"untouched control file: {control_tally}")
    # The file is whole again: the URL answers the reference bytes.
    for tls in (False, True):
        r = fetch(n.ssl_port if tls else n.port, path, tls=tls)
        if r.status != 200 or r.body != want:
            problems.append(f"after the churn ({'https' if tls else 'http'}): {r.status} "
                            f"{'other bytes' if r.status == 200 else r.error}")
    if any(t.cut or t.status_5xx for t in tallies.values()):
        # Every failed answer is explained by a line naming the file: ours ("changed while
        # being served", or why the file as it is now cannot be packaged) or nginx's own
        # ("… was truncated", "read only …").
        lines = [line for line in n.log_text().splitlines()
                 if str(source) in line and ("[error]" in line or "[crit]" in line)]
        if not lines:
            problems.append(f"cut-short or 5xx answers but no error line naming {source}")
    return [f"{p} [{summary}]" for p in problems]


def churn_origin(make_nginx, tls_cert, fmt: str, workers: int = 1) -> tuple[Nginx, str, Path,
                                                                            str]:
    """An nginx (HTTP + HTTPS) with the churned presentation in /v/ and an untouched copy of it
    in /ctl/; returns it, the URL to churn, the file to truncate and the control URL."""
    n = make_nginx(workers=workers, tls=tls_cert)
    for d in ("v", "ctl"):
        m = media_dir(n, d)
        put(m / "p.mp4", FIXTURES / "progressive.mp4")
        ladder(m)
    n.start(MODULE_LOCATION)
    if fmt in ("frag-dash", "smooth"):
        base, source = "/v/ladder.ism", n.root / "v" / "ladder-video-720.ismv"
    else:
        base, source = "/v/p.mp4", n.root / "v" / "p.mp4"
    path = churn_url(n, fmt, base)
    return n, path, source, path.replace("/v/", "/ctl/", 1)


@pytest.mark.parametrize("fmt", ["dash", "ts", "aac", "fmp4", "keyframes", "frag-dash", "smooth"])
def test_truncated_in_place_never_kills_a_worker(make_nginx, tls_cert, fmt):
    n, path, source, control = churn_origin(make_nginx, tls_cert, fmt)
    problems = churn(n, path, source, control)
    assert not problems, "\n".join(problems)


def test_truncated_in_place_two_workers(make_nginx, tls_cert):
    n, path, source, control = churn_origin(make_nginx, tls_cert, "ts", workers=2)
    problems = churn(n, path, source, control)
    assert not problems, "\n".join(problems)


class SlowReader:
    """A GET on a socket with a small receive buffer (set before connecting), read at the
    test's pace: headers first, then as many body bytes as asked."""

    def __init__(self, port: int, path: str, *, tls: bool = False, rcvbuf: int = 4096,
                 timeout: float = CLIENT_TIMEOUT):
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.settimeout(timeout)
        raw.connect(("127.0.0.1", port))
        self.sock = INSECURE.wrap_socket(raw, server_hostname="localhost") if tls else raw
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        self.status: int | None = None
        self.length: int | None = None
        self.body = bytearray()
        self.closed = False

    def _recv(self, size: int) -> bytes:
        try:
            data = self.sock.recv(size)
        except (OSError, ssl.SSLError):
            data = b""
        if not data:
            self.closed = True
        return data

    def read_headers(self) -> None:
        head = bytearray()
        while b"\r\n\r\n" not in head and not self.closed and len(head) < 65536:
            head += self._recv(4096)
        text, _, rest = bytes(head).partition(b"\r\n\r\n")
        lines = text.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1]) if lines[0].startswith("HTTP/") else None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                self.length = int(value.strip())
        self.body += rest

    def read(self, size: int, deadline: float) -> None:
        """Reads until `size` more body bytes, the end of the body, EOF or `deadline`."""
        goal = len(self.body) + size
        while len(self.body) < goal and not self.closed and time.monotonic() < deadline:
            if self.length is not None and len(self.body) >= self.length:
                return
            self.body += self._recv(min(65536, goal - len(self.body)))

    @property
    def complete(self) -> bool:
        return self.length is not None and len(self.body) == self.length

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def ts_segment_url(n: Nginx, base: str, which: int = 1) -> str:
    master_path = f"{base}/.m3u8"
    variant = resolve(master_path, playlist_uris(get_ok(n, master_path).decode())[-1])
    return resolve(variant, playlist_uris(get_ok(n, variant).decode())[which])


def test_single_truncation_during_slow_ts_download(make_nginx, tls_cert, big_media):
    """The source is cut to half once while two slow clients (HTTP, HTTPS) download a large TS
    segment of it: the worker survives; a complete answer is the right one."""
    n = make_nginx(tls=tls_cert)
    source = put(media_dir(n) / "big.mp4", big_media)
    n.start(MODULE_LOCATION)
    path = ts_segment_url(n, "/v/big.mp4")
    want = get_ok(n, path)
    workers = workers_of(n)
    readers = [SlowReader(n.port, path), SlowReader(n.ssl_port, path, tls=True)]
    try:
        deadline = time.monotonic() + 30
        for r in readers:
            r.read_headers()
            assert r.status == 200 and r.length == len(want)
            r.read(64 << 10, deadline)
        time.sleep(0.3)
        with open(source, "r+b", buffering=0) as f:
            f.truncate(source.stat().st_size // 2)
        for r in readers:
            while not r.closed and not r.complete and time.monotonic() < deadline:
                r.read(256 << 10, deadline)
                time.sleep(0.01)
    finally:
        for r in readers:
            r.close()
    assert n.crashes() == [] and n.worker_pids() == workers, n.crashes()
    for r in readers:
        if r.complete:
            assert bytes(r.body) == want
    assert fetch(n.port, "/v/big.mp4/.m3u8").status is not None
    assert n.crashes() == [] and n.worker_pids() == workers


# ------------------------------------------------------------------------------------ 2. FIFOs
def release_fifo(path: Path) -> None:
    """Opens and closes the write end of a FIFO without blocking: a reader stuck in open() or
    read() on it returns."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as e:
        if e.errno != errno.ENXIO:  # ENXIO: nobody has it open for reading
            raise
        return
    os.close(fd)


@pytest.mark.parametrize("case", ["fifo.mp4", "fifo.mp4/.mpd", "fifo.ism", "src-fifo.ism"])
def test_fifo_does_not_block_the_worker(make_nginx, case):
    n = make_nginx()
    m = media_dir(n)
    put(m / "p.mp4", FIXTURES / "progressive.mp4")
    for f in ["ladder-video-360.ismv", "ladder-audio-eng.isma"]:
        put(m / f, FIXTURES / f)
    ismtool_create(m / "real.ism", [m / "ladder-video-360.ismv", m / "ladder-audio-eng.isma"])
    fifos = {"fifo.mp4": m / "fifo.mp4", "fifo.ism": m / "fifo.ism", "pipe": m / "pipe.ismv"}
    for f in fifos.values():
        os.mkfifo(f, 0o644)
        f.chmod(0o644)
    # A real server manifest whose video src is a FIFO.
    put(m / "src-fifo.ism", (m / "real.ism").read_text().replace(
        'src="ladder-video-360.ismv"', 'src="pipe.ismv"'))
    url, fifo = {"fifo.mp4": ("/v/fifo.mp4", fifos["fifo.mp4"]),
                 "fifo.mp4/.mpd": ("/v/fifo.mp4/.mpd", fifos["fifo.mp4"]),
                 "fifo.ism": ("/v/fifo.ism/.mpd", fifos["fifo.ism"]),
                 "src-fifo.ism": ("/v/src-fifo.ism/.mpd", fifos["pipe"])}[case]
    n.start(MODULE_LOCATION)
    workers = workers_of(n)
    try:
        r = fetch(n.port, url, timeout=3)
        after = fetch(n.port, "/v/p.mp4/.mpd", timeout=3)
    finally:
        for f in fifos.values():
            release_fifo(f)
    assert r.status == 404, f"{url}: {r.status} {r.error}"
    assert after.status == 200 and after.complete, f"next request: {after.status} {after.error}"
    assert n.worker_pids() == workers
    lines = [line for line in n.log_lines("is not a regular file") if "[crit]" in line]
    assert any(f'"{fifo}" is not a regular file' in line for line in lines), \
        n.log_lines(str(fifo)) or n.log_text()[-2000:]


# --------------------------------------------------------------------- 3. disable_symlinks
SYMLINK_MODES = {
    "off": "disable_symlinks off;",
    "on": "disable_symlinks on;",
    "if_not_owner": "disable_symlinks if_not_owner;",
    "on_from_document_root": "disable_symlinks on from=$document_root;",
}


def symlink_tree(root: Path) -> None:
    """Under `root`: real files, a symlinked mp4, a symlinked directory, and two presentations
    whose server manifest is a real file and whose 720 video src is a symlink (owned by root,
    and by nobody)."""
    v = root / "v"
    put(v / "real.mp4", FIXTURES / "progressive.mp4")
    os.symlink("real.mp4", v / "link.mp4")
    os.symlink("real.mp4", v / "nlink.mp4")
    os.lchown(v / "nlink.mp4", NOBODY, NOBODY)
    put(root / "realdir" / "o.mp4", FIXTURES / "progressive.mp4")
    (root / "realdir").chmod(0o755)
    os.symlink("realdir", root / "linkdir")
    ladder(v)
    for sub, owner in [("s", 0), ("ns", NOBODY)]:
        d = v / sub
        d.mkdir(mode=0o755)
        for f in LADDER:
            if f == "ladder-video-720.ismv":
                os.symlink(f"../{f}", d / f)
                os.lchown(d / f, owner, owner)
            else:
                put(d / f, v / f)
        put(d / "ladder.ism", v / "ladder.ism")


@pytest.mark.parametrize("cache", [False, True], ids=["no_cache", "open_file_cache"])
@pytest.mark.parametrize("mode", list(SYMLINK_MODES))
def test_disable_symlinks(make_nginx, mode, cache):
    n = make_nginx()
    real_root = n.prefix / "www"
    real_root.mkdir(mode=0o755)
    symlink_tree(real_root)
    if mode == "on_from_document_root":
        # The server root itself is reached through a symlink: from= exempts it.
        os.symlink(real_root, n.prefix / "wwwlink")
        n.root = n.prefix / "wwwlink"
    else:
        n.root = real_root
    server = f"""
        {SYMLINK_MODES[mode]}
        {"open_file_cache max=100;" if cache else ""}
        location ^~ /static/ {{ alias {n.root}/; }}
        {MODULE_LOCATION}
    """
    n.start(server)
    ladder_mpd = mpd_segments(n, "/v/ladder.ism/.mpd")
    rep = max((r for r in ladder_mpd if r.startswith("video=")), key=lambda r: int(r[6:]))
    init, media = ladder_mpd[rep][0], ladder_mpd[rep][1]
    smooth = second(smooth_fragments(n, "/v/ladder.ism/Manifest")[rep])
    ts = ts_segment_url(n, "/v/ladder.ism", 0)
    assert rep in ts, ts

    def sym_urls(d: str) -> list[str]:
        return [f"/v/{d}/ladder.ism/.mpd", f"/v/{d}/ladder.ism/Manifest",
                init.replace("/v/", f"/v/{d}/", 1), media.replace("/v/", f"/v/{d}/", 1),
                smooth.replace("/v/", f"/v/{d}/", 1), ts.replace("/v/", f"/v/{d}/", 1)]

    # (module URLs, the file they read as the static module would serve it, the statuses
    # allowed). The static module's status for that file is the reference: nginx refuses a
    # symlink with 403 (ELOOP/EACCES) and a symlinked directory in the path with 404 (openat
    # with O_NOFOLLOW|O_DIRECTORY fails with ENOTDIR), and the module must answer the same.
    ok, refused = {200}, {403}
    root_owned_link = ok if mode in ("off", "if_not_owner") else refused
    cases = [
        (["/v/real.mp4", "/v/real.mp4/.mpd", "/v/ladder.ism/.mpd", media], "v/real.mp4", ok),
        (["/realdir/o.mp4", "/realdir/o.mp4/.mpd"], "realdir/o.mp4", ok),
        (["/v/link.mp4", "/v/link.mp4/.mpd"], "v/link.mp4", root_owned_link),
        (["/linkdir/o.mp4", "/linkdir/o.mp4/.mpd"], "linkdir/o.mp4",
         ok if mode in ("off", "if_not_owner") else {403, 404}),
        (sym_urls("s"), "v/s/ladder-video-720.ismv", root_owned_link),
        (["/v/nlink.mp4", "/v/nlink.mp4/.mpd"], "v/nlink.mp4", ok if mode == "off" else refused),
        (sym_urls("ns"), "v/ns/ladder-video-720.ismv", ok if mode == "off" else refused),
    ]
    wrong = []
    for urls, file, allowed in cases:
        static = fetch(n.port, f"/static/{file}")
        assert static.status in allowed, f"static module: /static/{file}: {static.status}"
        for url in urls:
            r = fetch(n.port, url)
            if r.status != static.status:
                wrong.append(f"{url}: {r.status} (static module for {file}: {static.status})")
            elif url.endswith(".mp4") and r.status == 200 and r.body != static.body:
                wrong.append(f"{url}: other bytes than the static module's")
    assert not wrong, "\n".join(wrong)
    assert n.crashes() == []


# ---------------------------------------------------------------- 4. NUL-terminated file names
@pytest.mark.parametrize("sendfile", ["on", "off"])
def test_logged_file_names_end_where_the_name_ends(make_nginx, sendfile):
    """nginx logs the name of a file the module handed it (here: a progressive download whose
    file is truncated while it is read slowly); the name must end at its NUL."""
    n = make_nginx()
    source = put(media_dir(n) / "big.mp4", bytes(range(256)) * (48 << 12))  # 48 MiB
    n.start(f"sendfile {sendfile};\n" + MODULE_LOCATION)
    workers = workers_of(n)
    reader = SlowReader(n.port, "/v/big.mp4")
    try:
        deadline = time.monotonic() + 30
        reader.read_headers()
        assert reader.status == 200 and reader.length == 48 << 20
        reader.read(64 << 10, deadline)
        time.sleep(0.5)
        with open(source, "r+b", buffering=0) as f:
            f.truncate(1 << 20)
        while not reader.closed and not reader.complete and time.monotonic() < deadline:
            reader.read(1 << 20, deadline)
    finally:
        reader.close()
    assert not reader.complete
    # nginx's own lines about the cut file (sendfile() reported that "…" was truncated, or
    # pread() read only … from "…") quote the name: the closing quote must follow the path.
    for _ in range(50):
        lines = n.log_lines(f'"{source}')
        if lines:
            break
        time.sleep(0.1)
    assert lines, n.log_text()[-2000:]
    bad = [line for line in lines if f'"{source}"' not in line]
    assert not bad, bad
    assert n.crashes() == [] and n.worker_pids() == workers


# ---------------------------------------------------------------- 5. variants no manifest lists
def test_only_listed_variants_are_served(make_nginx):
    n = make_nginx()
    ladder(media_dir(n))
    n.start(MODULE_LOCATION)
    base = "/v/ladder.ism"
    bitrates = [165000, 273000, 432000]
    b = bitrates[0]
    refused = [
        f"{base}/ladder" + f"-video={b}" * 16 + "-1.ts",
        f"{base}/ladder-video={b}-video={bitrates[1]}-1.ts",
        f"{base}/ladder-video={b}-audio_eng=128000-1.ts",
        f"{base}/ladder-video={b}-video={b}-1.ts",
        f"{base}/ladder-video={b}-video={bitrates[1]}.m3u8",
        f"{base}/ladder-video={b}-audio_eng=128000.m3u8",
    ]
    wrong = [f"{u}: {status}" for u in refused
             for status in [fetch(n.port, u).status] if status != 404]
    listed = 0
    for master_path in [f"{base}/.m3u8?hls_client_manifest_version=3", f"{base}/.m3u8",
                        f"{base}/.m3u8?hls_fmp4"]:
        master = get_ok(n, master_path).decode()
        uris = playlist_uris(master) + tag_uris(master, "#EXT-X-MEDIA") + \
            tag_uris(master, "#EXT-X-I-FRAME-STREAM-INF")
        assert len(uris) >= 3, master
        for uri in uris:
            path = resolve(master_path, uri)
            r = fetch(n.port, path)
            listed += 1
            if r.status != 200:
                wrong.append(f"{master_path} lists {uri}: {r.status}")
                continue
            playlist = r.body.decode()
            children = playlist_uris(playlist) + tag_uris(playlist, "#EXT-X-MAP")
            for child in children[:2] + children[-1:]:
                c = fetch(n.port, resolve(path, child))
                if c.status not in (200, 206) or not c.complete:
                    wrong.append(f"{path} lists {child}: {c.status}")
    assert listed >= 9
    assert not wrong, "\n".join(wrong)


# ------------------------------------------------------------------------------ 6. track names
def renamed_ism(ism_text: str, names: dict[str, str]) -> str:
    """A server manifest with the trackName params replaced (values are raw XML attribute
    text, so character references pass through)."""
    for old, new in names.items():
        ism_text = ism_text.replace(f'name="trackName" value="{old}"',
                                    f'name="trackName" value="{new}"')
    return ism_text


def test_track_name_with_newline_injects_no_line(make_nginx):
    n = make_nginx()
    m = media_dir(n)
    ism = ladder(m)
    # XML character references: the parsed names hold LF (and CR LF).
    put(m / "nl.ism", renamed_ism(ism.read_text(), {
        "video": "video&#10;#EXT-X-INJECTED:1&#10;x",
        "audio_eng": "eng&#13;&#10;#EXT-X-INJECTED:1"}))
    n.start(MODULE_LOCATION)
    for master in ["/v/nl.ism/.m3u8", "/v/nl.ism/.m3u8?hls_fmp4",
                   "/v/nl.ism/.m3u8?hls_client_manifest_version=3"]:
        r = fetch(n.port, master)
        injected = [line for line in r.body.decode(errors="replace").splitlines()
                    if line.startswith("#EXT-X-INJECTED")]
        assert r.status != 200 or not injected, (master, r.body[:2000])
    assert n.log_lines("control character"), n.log_text()[-2000:]
    assert n.crashes() == []


SPECIAL_NAMES = {"video": 'v/i&quot;d e%o', "audio_eng": 'a/u&quot;d e%20eng'}


def test_track_names_with_url_characters(make_nginx):
    n = make_nginx()
    m = media_dir(n)
    ism = ladder(m)
    put(m / "sp.ism", renamed_ism(ism.read_text(), SPECIAL_NAMES))
    n.start(MODULE_LOCATION)
    base = "/v/sp.ism"
    wrong = []

    def check(path: str) -> bytes:
        r = fetch(n.port, path)
        if r.status != 200 or not r.complete:
            wrong.append(f"{path}: {r.status}")
            return b""
        return r.body

    hls = {}
    for master_path in [f"{base}/.m3u8", f"{base}/.m3u8?hls_fmp4"]:
        master = get_ok(n, master_path).decode()
        audio = [resolve(master_path, u) for u in tag_uris(master, "#EXT-X-MEDIA")]
        eng = [resolve(master_path, re.search(r'URI="([^"]*)"', line).group(1))
               for line in master.splitlines()
               if line.startswith("#EXT-X-MEDIA:TYPE=AUDIO") and 'LANGUAGE="eng"' in line]
        video = [resolve(master_path, u) for u in playlist_uris(master)]
        hls[master_path] = (video, eng)
        for path in video + audio + [resolve(master_path, u) for u in
                                     tag_uris(master, "#EXT-X-I-FRAME-STREAM-INF")]:
            playlist = check(path).decode(errors="replace")
            for child in playlist_uris(playlist) + tag_uris(playlist, "#EXT-X-MAP"):
                check(resolve(path, child))
    dash = mpd_segments(n, f"{base}/.mpd")
    assert len(dash) == 5, list(dash)
    for urls in dash.values():
        for u in urls:
            check(u)
    smooth = smooth_fragments(n, f"{base}/Manifest")
    assert len(smooth) == 5, list(smooth)
    for urls in smooth.values():
        for u in urls:
            check(u)
    assert not wrong, "\n".join(wrong)
    # Real clients: ffmpeg reads the HLS (TS and fMP4) and DASH streams frame-exactly.
    want_v = frame_hashes(str(FIXTURES / "ladder-video-720.ismv"), "0:v")
    want_a = frame_hashes(str(FIXTURES / "ladder-audio-eng.isma"), "0:a")
    for video, eng in hls.values():
        assert frame_hashes(n.url(video[-1]), "0:v") == want_v, video[-1]
        assert len(eng) == 1 and frame_hashes(n.url(eng[0]), "0:a") == want_a, eng
    assert frame_hashes(n.url(f"{base}/.mpd"), "0:v:2") == want_v
    assert frame_hashes(n.url(f"{base}/.mpd"), "0:a:0") == want_a
    assert n.crashes() == []


# ------------------------------------------------------------------------- 7. the rest
def mdat_payload(data: bytes) -> tuple[int, int]:
    """(offset, size) of the first top-level mdat's payload."""
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        header = 8
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8:pos + 16])[0]
            header = 16
        if kind == b"mdat":
            return pos + header, size - header
        if size < 8:
            break
        pos += size
    raise AssertionError("no mdat")


def test_etag_follows_payload_changed_in_place(make_nginx):
    n = make_nginx()
    source = put(media_dir(n) / "e.mp4", FIXTURES / "progressive.mp4")
    second_of = int(time.time()) - 100
    os.utime(source, ns=(second_of * 10**9, second_of * 10**9 + 100_000_000))
    n.start(MODULE_LOCATION)
    reps = mpd_segments(n, "/v/e.mp4/.mpd")
    video = next(r for r in reps if r.startswith("video="))
    urls = ["/v/e.mp4/.mpd", reps[video][0], reps[video][1], reps[video][2],
            "/v/e.mp4/.m3u8", ts_segment_url(n, "/v/e.mp4", 0)]
    before = {}
    for u in urls:
        r = fetch(n.port, u)
        assert r.status == 200 and r.headers.get("etag"), u
        before[u] = r
        assert fetch(n.port, u, headers={"If-None-Match": r.headers["etag"]}).status == 304, u
    # Same size, same boxes, other sample bytes; the mtime moves within the same second.
    data = bytearray(source.read_bytes())
    start, size = mdat_payload(bytes(data))
    with open(source, "r+b", buffering=0) as f:
        for at in range(start + 100, start + size, 997):
            f.seek(at)
            f.write(bytes([data[at] ^ 0x5A]))
    assert source.stat().st_size == len(data)
    os.utime(source, ns=(second_of * 10**9, second_of * 10**9 + 600_000_000))
    still = []
    for u in urls:
        r = fetch(n.port, u, headers={"If-None-Match": before[u].headers["etag"]})
        if r.status != 200:
            still.append(f"{u}: {r.status} for the old ETag")
    assert not still, "\n".join(still)


def test_a_source_rewritten_with_its_mtime_restored_gets_a_new_index_and_etag(make_nginx):
    """Rewritten in place (same inode, same size) and its modification time set back to the
    nanosecond, as `touch -r`, `rsync --times` or a restore leave it: only the file's change
    time tells, and it is part of the source's identity."""
    n = make_nginx()
    source = put(media_dir(n) / "c.mp4", FIXTURES / "progressive.mp4")
    n.start(MODULE_LOCATION)
    before = fetch(n.port, "/v/c.mp4/.mpd")
    assert before.status == 200 and b'id="audio_eng=' in before.body, before.body
    stat = source.stat()
    time.sleep(0.05)  # past the file system's timestamp granularity
    with open(source, "r+b", buffering=0) as f:
        f.write(with_mdhd_language(source.read_bytes(), "eng", "fra"))
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    after_stat = source.stat()
    assert (after_stat.st_ino, after_stat.st_size, after_stat.st_mtime_ns) == \
        (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    after = fetch(n.port, "/v/c.mp4/.mpd")
    assert after.status == 200
    assert b'id="audio_fra=' in after.body and b"audio_eng" not in after.body, after.body
    assert after.headers["etag"] != before.headers["etag"]
    stale = fetch(n.port, "/v/c.mp4/.mpd", headers={"If-None-Match": before.headers["etag"]})
    assert stale.status == 200


def test_pread_truncation_never_logs_header_already_sent(make_nginx, tls_cert):
    n = make_nginx(tls=tls_cert)
    for d in ("v", "ctl"):
        put(media_dir(n, d) / "p.mp4", FIXTURES / "progressive.mp4")
    n.start(r"location ~ \.(ism|isml|mp4)(/|$) { usp_handle_ism; usp_disable_mmap on; }")
    path = churn_url(n, "dash", "/v/p.mp4")
    problems = churn(n, path, n.root / "v" / "p.mp4", path.replace("/v/", "/ctl/", 1), seconds=5)
    sent = n.log_lines("header already sent")
    if sent:
        problems.insert(0, f"{len(sent)} 'header already sent' lines, e.g. {sent[0]}")
    assert not problems, "\n".join(problems)


def test_long_path_segment_is_404(make_nginx):
    n = make_nginx()
    put(media_dir(n) / "p.mp4", FIXTURES / "progressive.mp4")
    n.start(MODULE_LOCATION)
    long = "a" * 300
    got = {u: fetch(n.port, u).status for u in
           [f"/v/{long}.ism/.mpd", f"/v/{long}.mp4/.mpd", f"/v/{long}.mp4",
            f"/v/{long}.ism/Manifest", f"/v/{long}/p.mp4/.mpd"]}
    assert all(s == 404 for s in got.values()), {u[:20] + "…" + u[-12:]: s for u, s in got.items()}


def test_vtt_of_a_video_track_is_404(make_nginx):
    n = make_nginx()
    ladder(media_dir(n))
    n.start(MODULE_LOCATION)
    for path in ["/v/ladder.ism/ladder-video=165000-1.vtt",
                 "/v/ladder.ism/hls/ladder-video=165000-1.vtt",
                 "/v/ladder.ism/ladder-audio_eng=128000-1.webvtt"]:
        r = fetch(n.port, path)
        assert r.status == 404, (path, r.status)
    assert n.log_lines("[error]") == []


def vm_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_slow_readers_do_not_each_hold_a_segment(make_nginx, big_media):
    n = make_nginx()
    put(media_dir(n) / "big.mp4", big_media)
    n.start(MODULE_LOCATION)
    path = ts_segment_url(n, "/v/big.mp4")
    seg = get_ok(n, path)
    assert len(seg) >= 4 << 20, len(seg)
    get_ok(n, path)
    [worker] = workers_of(n)
    before = vm_rss_kb(worker)
    socks = []
    try:
        for _ in range(100):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.settimeout(CLIENT_TIMEOUT)
            s.connect(("127.0.0.1", n.port))
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            socks.append(s)
        time.sleep(3)
        grown_mb = (vm_rss_kb(worker) - before) / 1024
    finally:
        for s in socks:
            s.close()
    assert grown_mb < 60, f"worker RSS grew by {grown_mb:.0f} MB for 100 readers of a " \
                          f"{len(seg) >> 20} MB segment"
    assert get_ok(n, "/v/big.mp4/.m3u8")
    assert n.worker_pids() == [worker] and n.crashes() == []


def test_log_lines_keep_their_reason(make_nginx):
    """A refused long query value still logs the reason; errors from a server manifest are not
    prefixed twice; a vbegin after vend is not logged as an empty vend."""
    n = make_nginx()
    m = media_dir(n)
    ism = ladder(m)
    text = ism.read_text()
    put(m / "escape.ism", text.replace('src="ladder-video-360.ismv"', 'src="../../x.ismv"'))
    put(m / "badmeta.ism", text.replace(
        "<head>", '<head>\n    <meta name="hls_client_manifest_version" content="many"/>'))
    n.start(MODULE_LOCATION)
    problems = []
    long_value = "1" * 3000
    status = fetch(n.port, f"/v/ladder.ism/.mpd?max_bitrate={long_value}").status
    lines = n.log_lines("max_bitrate")
    if status != 400 or not lines or \
            not all("expected a non-negative integer" in line for line in lines):
        problems.append(f"max_bitrate=<3000 digits>: {status}, log: "
                        f"{[line[:60] + '…' + line[-120:] for line in lines]}")
    for u, name in [("/v/escape.ism/.mpd", "escape.ism"), ("/v/badmeta.ism/.m3u8", "badmeta.ism")]:
        status = fetch(n.port, u).status
        if status is None or status < 400 or not n.log_lines(name):
            problems.append(f"{u}: {status}, log: {n.log_lines(name)}")
    doubled = n.log_lines("server manifest: server manifest:")
    if doubled:
        problems.append(f"doubled prefix: {doubled}")
    status = fetch(n.port, "/v/ladder.ism/.mpd?vbegin=3&vend=1").status
    lines = [line for line in n.log_lines("vend") if "vbegin=3" in line]
    if status != 400 or not lines or n.log_lines('vend=""'):
        problems.append(f"vbegin=3&vend=1: {status}, log: {lines}")
    assert not problems, "\n".join(problems)
