"""Bounded ingest memory (docs/COMPAT.md §5 "Ingest"): a fragment's payload streams to the
archive as it arrives, each worker's unfinished fragments share a budget
(`origin_ingest_memory`, 503 past it, 413 for a fragment that alone needs more, or that is
larger than `origin_ingest_max_fragment`), and a box that does not arrive whole within
`origin_ingest_fragment_timeout` is refused with 408. What was answered 200 is served after
each refusal."""

import select
import socket
import subprocess
import time

import pytest

from helpers.live import (SOURCE, cmaf_pieces, fragment_head, live_dir, split_cmaf,
                          synthetic_fragment, timeline)
from helpers.media import ffmpeg_made

LIVE_LOCATION = """
        location /live/ {
            usp_handle_ism;
            origin_live_auto_create on;
            client_max_body_size 0;
        }"""


def one_worker(make_nginx, http_extra=""):
    n = make_nginx(workers=1)
    live_dir(n)
    n.start(LIVE_LOCATION, http_extra=http_extra)
    return n


class ChunkedPost:
    """A chunked POST an encoder sends in steps; the origin may answer before its end."""

    def __init__(self, origin, path):
        self.sock = socket.create_connection(("127.0.0.1", origin.port), timeout=60)
        self.sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                          "Connection: close\r\n\r\n".encode())

    def send(self, data, piece=64 << 10):
        """Sends `data` as chunks; False once the origin closed the connection."""
        try:
            for at in range(0, len(data), piece):
                p = data[at:at + piece]
                self.sock.sendall(b"%x\r\n" % len(p) + p + b"\r\n")
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def answered(self, timeout=0.0):
        """Whether an answer (or the connection's end) is there to read."""
        return bool(select.select([self.sock], [], [], timeout)[0])

    def status(self, end=True):
        """Ends the body (unless answered already) and returns the answer's status."""
        if end and not self.answered():
            try:
                self.sock.sendall(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
        try:
            line = self.sock.makefile("rb").readline().split()
        except ConnectionResetError:
            return None
        finally:
            self.sock.close()
        return int(line[1]) if len(line) > 1 else None


LMSG = (24).to_bytes(4, "big") + b"stypmsdh\0\0\0\0msdhlmsg"


def spool_files(origin):
    return list((origin.root / "live").rglob(".spool*"))


def worker_rss(origin):
    pid = origin.worker_pids()[0]
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) << 10
    raise AssertionError("no VmRSS")


def packets(url):
    """Packet hashes of the video stream (stream copy: each sample's bytes)."""
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", url, "-map", "0:v", "-c", "copy",
                          "-f", "framemd5", "-"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [line.rsplit(",", 1)[1].strip() for line in out.stdout.splitlines()
            if line and not line.startswith("#")]


def large_gop_stream():
    """4 s of nearly lossless 1280x720 video in one GOP: one CMAF fragment of many MB."""
    path = ffmpeg_made("large-gop-720.cmfv", [
        "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25", "-t", "4", "-c:v", "libx264",
        "-preset", "ultrafast", "-crf", "1", "-g", "100", "-keyint_min", "100",
        "-sc_threshold", "0", "-pix_fmt", "yuv420p", "-movflags",
        "empty_moov+separate_moof+default_base_moof+cmaf+frag_keyframe", "-f", "mp4"])
    return path, split_cmaf(path.read_bytes())


def test_a_large_fragment_streams_to_the_archive_and_plays_frame_exact(make_nginx):
    origin = one_worker(make_nginx)
    path, (init, fragments) = large_gop_stream()
    assert len(fragments) == 1 and len(fragments[0]) > 4 << 20
    post = ChunkedPost(origin, "/live/big.isml/Streams(video.cmfv)")
    # Branded as the stream's last segment: the channel stops, and players read it whole.
    assert post.send(init + LMSG + fragments[0], piece=16 << 10)
    assert post.status() == 200
    assert len(timeline(origin.get("/live/big.isml/.mpd").text)) == 1
    assert packets(origin.url("/live/big.isml/.mpd")) == packets(str(path))
    assert spool_files(origin) == []


def test_an_unfinished_large_fragment_holds_a_window_not_the_fragment(make_nginx):
    """Fails on a build that buffers whole fragments: 48 MB of an unfinished fragment were
    in the worker's memory."""
    origin = one_worker(make_nginx)
    init, fragments = cmaf_pieces()
    url_path = "/live/w.isml/Streams(video.cmfv)"
    first = ChunkedPost(origin, url_path)
    assert first.send(init + fragments[0])
    assert first.status() == 200
    before = worker_rss(origin)
    big = synthetic_fragment(init, start=2, size=48 << 20)
    post = ChunkedPost(origin, url_path)
    assert post.send(big[:-1000], piece=256 << 10)
    time.sleep(1)
    held = worker_rss(origin) - before
    assert held < 16 << 20, f"the worker holds {held >> 20} MB of an unfinished fragment"
    assert post.send(big[-1000:])
    assert post.status() == 200
    video = timeline(origin.get("/live/w.isml/.mpd").text)
    assert len(video) == 2
    assert spool_files(origin) == []


def test_a_fragment_larger_than_the_limit_is_413_at_its_header(make_nginx):
    origin = one_worker(make_nginx, "origin_ingest_max_fragment 1m;")
    init, fragments = cmaf_pieces()
    path = "/live/l.isml/Streams(video.cmfv)"
    post = ChunkedPost(origin, path)
    assert post.send(init + fragments[0])
    assert post.status() == 200
    # Refused once its mdat header is in, before any of its payload came.
    post = ChunkedPost(origin, path)
    post.send(fragment_head(init, start=2, samples=25, sample_size=80_000))
    assert post.answered(timeout=10)
    assert post.status() == 413
    assert origin.log_lines("over the limit")
    # What was answered 200 is served, and the stream goes on.
    post = ChunkedPost(origin, path)
    assert post.send(fragments[1])
    assert post.status() == 200
    assert len(timeline(origin.get("/live/l.isml/.mpd").text)) == 2
    assert spool_files(origin) == []


def in_memory_head(init, start):
    """The head of a fragment whose 1.9 MB payload a session keeps in memory."""
    return fragment_head(init, start=start, samples=25, sample_size=76_000)


def test_past_the_worker_budget_an_unfinished_fragment_is_503(make_nginx):
    origin = one_worker(make_nginx, "origin_ingest_memory 2m;")
    init, fragments = cmaf_pieces()
    head = in_memory_head(init, 10)
    payload = bytes(25 * 76_000)
    a = ChunkedPost(origin, "/live/m.isml/Streams(a.cmfv)")
    assert a.send(init + head + payload[:1_500_000])
    time.sleep(0.5)
    # Another stream's unfinished fragment would take the worker past its budget.
    b = ChunkedPost(origin, "/live/m.isml/Streams(b.cmfv)")
    b.send(init + head + payload[:1_500_000])
    assert b.answered(timeout=10)
    assert b.status() == 503
    assert origin.log_lines("ingest memory budget")
    # The first one completes, and is served.
    assert a.send(payload[1_500_000:])
    assert a.status() == 200
    mpd = origin.get("/live/m.isml/.mpd").text
    assert len(timeline(mpd)) == 1
    # Nothing of the refused stream's fragment was stored; with the budget free it is taken.
    assert "b.cmfv" not in (origin.root / "live" / "m.isml").read_text()
    b = ChunkedPost(origin, "/live/m.isml/Streams(b.cmfv)")
    assert b.send(init + head + payload)
    assert b.status() == 200
    assert spool_files(origin) == []


def test_a_fragment_that_alone_needs_more_than_the_budget_is_413(make_nginx):
    origin = one_worker(make_nginx, "origin_ingest_memory 1m;")
    init, fragments = cmaf_pieces()
    post = ChunkedPost(origin, "/live/o.isml/Streams(video.cmfv)")
    post.send(init + in_memory_head(init, 10) + bytes(1_500_000))
    assert post.answered(timeout=10)
    assert post.status() == 413
    # Fragments that fit are taken.
    post = ChunkedPost(origin, "/live/o.isml/Streams(video.cmfv)")
    assert post.send(init + fragments[0])
    assert post.status() == 200
    assert len(timeline(origin.get("/live/o.isml/.mpd").text)) == 1


def test_a_dripping_fragment_is_refused_at_the_timeout(make_nginx):
    """A byte every half second passes `client_body_timeout`; the fragment's deadline
    does not. Fails on a build without one (the drip held the request for ever)."""
    origin = one_worker(make_nginx, "origin_ingest_fragment_timeout 2s;")
    init, fragments = cmaf_pieces()
    path = "/live/d.isml/Streams(video.cmfv)"
    post = ChunkedPost(origin, path)
    assert post.send(init + fragments[0])
    assert post.status() == 200
    post = ChunkedPost(origin, path)
    began = time.monotonic()
    post.send(fragments[1][:1000])
    rest = fragments[1][1000:]
    while not post.answered(timeout=0.5):
        assert time.monotonic() - began < 10, "the drip was never refused"
        post.send(rest[:1])
        rest = rest[1:]
    assert post.status(end=False) == 408
    assert 1.9 < time.monotonic() - began < 6
    assert origin.log_lines("did not arrive whole within 2000 ms")
    # The fragment sent whole is taken; what came before is served.
    post = ChunkedPost(origin, path)
    assert post.send(fragments[1])
    assert post.status() == 200
    assert len(timeline(origin.get("/live/d.isml/.mpd").text)) == 2


@pytest.mark.parametrize("directive", ["origin_ingest_memory 1k", "origin_ingest_max_fragment 8g",
                                       "origin_ingest_fragment_timeout soon"])
def test_bad_values_fail_the_configuration_test(make_nginx, directive):
    n = make_nginx(workers=1)
    bad = n.test_config(n.config(LIVE_LOCATION, http_extra=directive + ";"))
    assert bad.returncode != 0 and directive.split()[0] in bad.stderr
