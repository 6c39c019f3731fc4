"""Remote sources: the media set a backend publishes, the URLs a player reaches from a
manifest, byte-for-byte comparison with a local origin, and a real S3 server (s3s-fs)."""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests

from harness import free_port
from helpers.media import FIXTURES, ISMTOOL, LADDER, MPD_NS

MEDIA = LADDER + ["progressive.mp4", "progressive-tail.mp4", "ladder-video-360.mp4",
                  "ladder-audio-eng.mp4", "subtitles-eng.mp4"]
ACCESS_KEY = "AKIAORIGINTEST0001"
SECRET_KEY = "origin/Secret+Key/0001"
S3S_FS = Path.home() / ".cargo" / "bin" / "s3s-fs"


def publish(directory):
    """The media set and its server manifests, in `directory`."""
    directory.mkdir(mode=0o755, parents=True)
    for f in MEDIA:
        shutil.copy(FIXTURES / f, directory / f)
    for name, files in [("ladder", LADDER),
                        ("mp4s", ["ladder-video-360.mp4", "ladder-audio-eng.mp4"]),
                        ("subs", ["ladder-video-360.ismv", "ladder-audio-eng.isma",
                                  "subtitles-eng.mp4"])]:
        subprocess.run([str(ISMTOOL), "create", "-o", str(directory / f"{name}.ism"),
                        *[str(directory / f) for f in files]], check=True, capture_output=True)
    for p in directory.iterdir():
        p.chmod(0o644)


def hls_urls(get, url: str) -> list[str]:
    """Every URL an HLS client may fetch from a master playlist."""
    found = [url]
    master = get(url).text
    children = [line for line in master.splitlines() if line and not line.startswith("#")]
    children += re.findall(r'URI="([^"]+)"', master)
    for child in children:
        playlist_url = urljoin(url, child)
        found.append(playlist_url)
        text = get(playlist_url).text
        for line in text.splitlines():
            if line and not line.startswith("#"):
                found.append(urljoin(playlist_url, line))
        found += [urljoin(playlist_url, u) for u in re.findall(r'URI="([^"]+)"', text)]
    return list(dict.fromkeys(found))


def dash_urls(get, url: str) -> list[str]:
    found = [url]
    mpd = ET.fromstring(get(url).content)
    base = urljoin(url, mpd.find("d:Period/d:BaseURL", MPD_NS).text)
    for aset in mpd.iterfind("d:Period/d:AdaptationSet", MPD_NS):
        tmpl = aset.find("d:SegmentTemplate", MPD_NS)
        times, t = [], 0
        for s in tmpl.find("d:SegmentTimeline", MPD_NS):
            t = int(s.get("t", t))
            for _ in range(int(s.get("r", 0)) + 1):
                times.append(t)
                t += int(s.get("d"))
        for rep in aset.iterfind("d:Representation", MPD_NS):
            rid = rep.get("id")
            found.append(urljoin(base, tmpl.get("initialization").replace("$RepresentationID$", rid)))
            for t in times:
                media = tmpl.get("media").replace("$RepresentationID$", rid)
                found.append(urljoin(base, media.replace("$Time$", str(t))))
    return found


def smooth_urls(get, url: str) -> list[str]:
    found = [url]
    manifest = ET.fromstring(get(url).content)
    for stream in manifest.iterfind("StreamIndex"):
        template = stream.get("Url")
        times, t = [], 0
        for c in stream.iterfind("c"):
            t = int(c.get("t", t))
            for _ in range(int(c.get("r", 1))):
                times.append(t)
                t += int(c.get("d"))
        for level in stream.iterfind("QualityLevel"):
            for t in times:
                path = template.replace("{bitrate}", level.get("Bitrate")).replace(
                    "{start time}", str(t))
                found.append(urljoin(url, path))
    return found


def get_ok(n):
    """A GET for the URL crawlers that fails the test, with `n`'s error log, unless 200."""
    def get(url):
        r = requests.get(url, timeout=30)
        assert r.status_code == 200, f"{url}: {r.status_code} {r.text[:200]}\n{n.log_text()[-2000:]}"
        return r
    return get


def assert_same_as_local(origin, prefix: str, local, entry: str, crawl) -> None:
    """Every URL a player reaches from `entry` on the local origin answers the same bytes, with
    the same Content-Type, on `origin` under `prefix`."""
    local_urls = crawl(get_ok(local), local.url(entry))
    assert len(local_urls) > 3
    for url in local_urls:
        path = prefix + url.split(f":{local.port}", 1)[1]
        want = requests.get(url, timeout=30)
        got = requests.get(origin.url(path), timeout=30)
        assert got.status_code == want.status_code == 200, (
            f"{path}: {got.status_code} {got.text[:300]}\n{origin.log_text()[-3000:]}")
        assert got.headers["Content-Type"] == want.headers["Content-Type"], path
        assert got.content == want.content, path
        assert got.headers.get("ETag"), path
    assert not origin.crashes()


@contextlib.contextmanager
def s3s_fs(data: Path, access_key: str, secret_key: str, domain: str | None = None):
    """A running s3s-fs serving `data` (objects are files at data/bucket/key); yields its port.
    With `domain`, buckets are also found in host names under it (virtual-hosted style)."""
    if not S3S_FS.exists():
        pytest.fail("s3s-fs is missing: scripts/setup.sh installs it")
    port = free_port()
    proc = subprocess.Popen(
        [str(S3S_FS), "--host", "127.0.0.1", "--port", str(port), "--access-key", access_key,
         "--secret-key", secret_key, *(["--domain", domain] if domain else []), str(data)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "s3s-fs did not start"
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

