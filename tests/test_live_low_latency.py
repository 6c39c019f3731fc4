"""Low-latency live (LL-HLS): an encoder's chunked CMAF push is visible chunk by chunk as
parts of the segment still growing, blocking playlist reloads and requests for the hinted part
are held without blocking a worker and woken by the chunk's write in any nginx that shares the
archive, and the playlists parse with an independent LL-HLS parser (m3u8)."""

from __future__ import annotations

import asyncio
import os
import queue
import re
import shutil
import signal
import socket
import statistics
import threading
import time
from pathlib import Path

import m3u8
import requests

from helpers.archive import timescale_of
from helpers.live import SOURCE, shift_fragment, split_cmaf, timeline
from helpers.media import ffmpeg_made

LIVE_LOCATION = """
        location /live/ {
            usp_handle_ism;
            client_max_body_size 0;
        }"""

LL_CHANNEL = ('<smil xmlns="http://www.w3.org/2001/SMIL20/Language"><head>'
              '<meta name="low_latency" content="true"/>'
              '<meta name="dvr_window_length" content="30"/></head><body/></smil>')


def chunked_cmaf():
    """The looped source's video as ffmpeg pushes low-latency CMAF: 2-second GOPs cut into
    chunks of at most half a second (moof + mdat each), each GOP starting a chunk."""
    out = ffmpeg_made("ll-chunks-gop.cmfv", [
        "-stream_loop", "2", "-i", str(SOURCE), "-map", "0:v", "-c", "copy",
        "-movflags", "empty_moov+default_base_moof+cmaf+frag_keyframe", "-frag_duration", "500000",
        "-f", "mp4"], [SOURCE])
    return split_cmaf(out.read_bytes())


def ll_channel(root: Path, name: str = "ll") -> None:
    d = root / "live"
    d.mkdir(exist_ok=True)
    d.chmod(0o777)
    (d / f"{name}.isml").write_text(LL_CHANNEL)
    (d / f"{name}.isml").chmod(0o666)


class Encoder:
    """One chunked POST, as a live encoder keeps it open: the init segment and the first
    chunk go at once, each later chunk when `send` is called."""

    def __init__(self, url: str, init: bytes, first: bytes):
        self.pending: queue.Queue = queue.Queue()
        self.pending.put(init + first)
        self.acked: list[float] = []
        self.status = None
        self.thread = threading.Thread(target=self._post, args=(url,), daemon=True)
        self.thread.start()

    def _body(self):
        while True:
            piece = self.pending.get()
            if piece is None:
                return
            yield piece

    def _post(self, url):
        self.status = requests.post(url, data=self._body(), timeout=120).status_code

    def send(self, chunk: bytes) -> float:
        sent = time.monotonic()
        self.pending.put(chunk)
        return sent

    def close(self):
        self.pending.put(None)
        self.thread.join(60)


def media_playlist_url(n, name="ll") -> str:
    master = wait_for(lambda: ok_text(n.url(f"/live/{name}.isml/.m3u8?hls_fmp4")))
    uri = next(line for line in master.splitlines() if line and not line.startswith("#"))
    return n.url(f"/live/{name}.isml/{uri.split('?')[0]}")


def ok_text(url):
    r = requests.get(url, timeout=10)
    return r.text if r.status_code == 200 else None


def wait_for(f, timeout=15.0):
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        v = f()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out")


class HeldReload:
    """A blocking reload for the hinted part, asked in a thread of its own: `answer()` waits for
    its response; `answered_at` is when it came (monotonic clock)."""

    def __init__(self, url: str, text: str):
        msn, part = hint_of(text)
        self.msn, self.part = msn, part
        self.response = None
        self.answered_at = None
        self.thread = threading.Thread(
            target=self._get, args=(f"{url}?_HLS_msn={msn}&_HLS_part={part}",))
        self.thread.start()

    def _get(self, url):
        r = requests.get(url, timeout=30)
        self.answered_at = time.monotonic()
        self.response = r

    def answer(self) -> requests.Response:
        self.thread.join(30)
        assert self.response is not None, "no answer"
        return self.response


def hint_of(text: str) -> tuple[int, int]:
    """The (segment, part) of a playlist's preload hint."""
    m = re.search(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="[^"]*-(\d+)\.(\d+)\.m4s', text)
    assert m, text
    return int(m.group(1)), int(m.group(2))


def pushed_origin(make_nginx, **start):
    """One nginx, an LL channel, and an encoder that sent its init segment and first chunk:
    (nginx, chunks, encoder, media playlist URL, first playlist text)."""
    init, chunks = chunked_cmaf()
    n = make_nginx(workers=1)
    ll_channel(n.root)
    n.start(LIVE_LOCATION, **start)
    encoder = Encoder(n.url("/live/ll.isml/Streams(video.cmfv)"), init, chunks[0])
    url = media_playlist_url(n)
    return n, chunks, encoder, url, wait_for(lambda: ok_text(url))


def ingest_and_player(make_nginx):
    """An nginx taking ingest into an LL channel and a second one (two workers) serving the
    same archive: a chunk's write and the requests it wakes are in different processes."""
    ingest = make_nginx(workers=1)
    ll_channel(ingest.root)
    ingest.start(LIVE_LOCATION)
    player = make_nginx(workers=2)
    player.start(f"""
        location /live/ {{
            root {ingest.root};
            usp_handle_ism;
        }}""")
    return ingest, player


def test_chunks_are_parts_and_held_reloads_wake_in_another_nginx(make_nginx):
    """Ingest goes to one nginx; playlists are asked of a second one sharing the archive (so
    the held request and the chunk's write are in different processes). Each blocking reload
    for the hinted part is answered once that chunk is acknowledged, with the part listed."""
    init, chunks = chunked_cmaf()
    assert len(chunks) >= 16
    ingest, player = ingest_and_player(make_nginx)
    encoder = Encoder(ingest.url("/live/ll.isml/Streams(video.cmfv)"), init, chunks[0])
    url = wait_for(lambda: ok_text(player.url("/live/ll.isml/.m3u8?hls_fmp4")) and
                   media_playlist_url(player))
    text = wait_for(lambda: ok_text(url))
    waits = []
    for chunk in chunks[1:16]:
        held = HeldReload(url, text)
        msn, part = held.msn, held.part
        time.sleep(0.3)
        assert held.response is None, "answered before the part was ingested"
        sent = encoder.send(chunk)
        r = held.answer()
        assert r.status_code == 200, r.text
        text = r.text
        # The hinted part, or (the chunk began a GOP, so the segment ended before it) the
        # first part of the next segment.
        landed = next(f"{m}.{p}" for m, p in ((msn, part), (msn + 1, 0))
                      if f"-{m}.{p}.m4s" in text)
        waits.append(held.answered_at - sent)
        # The part itself is served at once, a CMAF fragment.
        uri = re.search(rf'URI="([^"]*-{re.escape(landed)}\.m4s)"', text).group(1)
        fragment = requests.get(url.rsplit("/", 1)[0] + "/" + uri, timeout=10)
        assert fragment.status_code == 200 and fragment.content[4:8] == b"styp"
    # An independent LL-HLS parser reads the playlist as it stands mid-stream.
    parsed = m3u8.loads(text)
    assert parsed.server_control.can_block_reload == "YES"
    assert parsed.server_control.part_hold_back >= 2 * parsed.part_inf.part_target
    assert parsed.preload_hint.hint_type == "PART"
    parts = [p for s in parsed.segments for p in s.parts]
    assert parts and all(p.duration <= parsed.part_inf.part_target for p in parts)
    # Whole segments (EXTINF) were listed once their successor began.
    assert [s for s in parsed.segments if s.uri], text
    encoder.close()
    assert encoder.status == 200
    waits.sort()
    print(f"held reload answered after the chunk was sent: p50 "
          f"{statistics.median(waits) * 1000:.1f} ms, max {waits[-1] * 1000:.1f} ms over "
          f"{len(waits)} parts")
    # Three target durations is the deadline: a wake-up is far sooner.
    assert waits[-1] < 2.0, waits


def test_a_thousand_held_reloads_on_one_worker_are_all_answered(make_nginx):
    n, chunks, encoder, url, text = pushed_origin(make_nginx, worker_connections=4096)
    msn, part = hint_of(text)
    path = url.split(str(n.port), 1)[1] + f"?_HLS_msn={msn}&_HLS_part={part}"
    worker = n.worker_pids()[0]

    def rss_kb():
        for line in Path(f"/proc/{worker}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def cpu_s():
        fields = Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def run():
        conns = []
        for _ in range(1000):
            reader, writer = await asyncio.open_connection("127.0.0.1", n.port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            conns.append((reader, writer))
        await asyncio.gather(*(w.drain() for _, w in conns))
        await asyncio.sleep(0.5)
        held_rss = rss_kb()
        # Holding costs nothing: no polling while the requests wait (within their deadline:
        # three target durations, 3 s this early in the stream).
        idle_from = cpu_s()
        await asyncio.sleep(1.0)
        cpu["idle"] = cpu_s() - idle_from
        woke_from = cpu_s()
        encoder.send(chunks[1])
        answers = await asyncio.wait_for(
            asyncio.gather(*(r.read() for r, _ in conns)), timeout=20)
        cpu["wake"] = cpu_s() - woke_from
        for _, w in conns:
            w.close()
        return held_rss, answers

    cpu: dict = {}
    before = rss_kb()
    held_rss, answers = asyncio.run(run())
    statuses = [a.split(b" ", 2)[1] for a in answers]
    assert statuses.count(b"200") == 1000, set(statuses)
    assert all(f"-{msn}.{part}.m4s".encode() in a for a in answers)
    print(f"worker RSS: {before} kB idle, {held_rss} kB holding 1000 reloads; worker CPU "
          f"{cpu['idle'] * 1000:.0f} ms over 1 s of holding them, {cpu['wake'] * 1000:.0f} ms to "
          f"answer them all ({cpu['wake'] * 1e6 / 1000:.0f} µs per request)")
    assert cpu["idle"] < 0.2, cpu
    encoder.close()


def test_a_chunk_after_a_timestamp_gap(make_nginx):
    """The encoder loses a chunk mid-GOP: the chunk after the gap is stored (a segment of its
    own, which cannot start playback), a held reload is still answered when it lands, the
    playlist stays valid LL-HLS, and the next GOP starts a clean segment."""
    n, chunks, encoder, url, text = pushed_origin(make_nginx)
    for c in chunks[1:6]:
        encoder.send(c)
    text = wait_for(lambda: (t := ok_text(url)) and "-2.1.m4s" in t and t)
    held = HeldReload(url, text)
    time.sleep(0.3)
    # Chunk 6 never comes: 7 starts half a second after where 5 ended.
    encoder.send(chunks[7])
    assert held.answer().status_code == 200, held.answer().text
    for c in chunks[8:13]:
        encoder.send(c)
    text = wait_for(lambda: (t := ok_text(url)) and "-3.1.m4s" in t and t)
    parsed = m3u8.loads(text)
    assert parsed.preload_hint.hint_type == "PART"
    # The segment after the gap's GOP starts with its key frame, in order.
    starts = [p.uri for s in parsed.segments for p in s.parts if p.independent]
    assert any("-3.0.m4s" in u for u in starts), text
    base = url.rsplit("/", 1)[0]
    for s in parsed.segments:
        for p in s.parts:
            assert requests.get(f"{base}/{p.uri}", timeout=10).status_code == 200, p.uri
    encoder.close()
    assert encoder.status == 200
    assert n.crashes() == []


def test_a_worker_holds_at_most_origin_live_max_held(make_nginx):
    init, chunks = chunked_cmaf()
    n = make_nginx(workers=1)
    ll_channel(n.root)
    n.start(LIVE_LOCATION, http_extra="origin_live_max_held 2;")
    encoder = Encoder(n.url("/live/ll.isml/Streams(video.cmfv)"), init, chunks[0])
    url = media_playlist_url(n)
    text = wait_for(lambda: ok_text(url))
    held = [HeldReload(url, text) for _ in range(2)]
    time.sleep(0.3)
    msn, part = hint_of(text)
    third = requests.get(f"{url}?_HLS_msn={msn}&_HLS_part={part}", timeout=5)
    assert third.status_code == 503
    assert "already holds 2 requests (origin_live_max_held)" in n.log_text(), n.log_text()[-2000:]
    encoder.send(chunks[1])
    assert [h.answer().status_code for h in held] == [200, 200]
    encoder.close()


def test_held_requests_end_by_the_deadline_when_the_encoder_stops(make_nginx):
    # The encoder sends a chunk and stalls mid-segment (its POST still open).
    n, _, encoder, url, text = pushed_origin(make_nginx)
    msn, part = hint_of(text)
    # A client that goes away while held ends its request (499), not a request held on.
    path = url.split(str(n.port), 1)[1]
    with socket.create_connection(("127.0.0.1", n.port)) as s:
        s.sendall(f"GET {path}?_HLS_msn={msn}&_HLS_part={part}&gone=1 HTTP/1.1\r\n"
                  "Host: x\r\n\r\n".encode())
        time.sleep(0.3)
    access = n.prefix / "logs" / "access.log"
    wait_for(lambda: re.search(r"gone=1 HTTP/1.1\" 499 ", access.read_text()))
    started = time.monotonic()
    r = requests.get(f"{url}?_HLS_msn={msn}&_HLS_part={part}", timeout=30)
    assert r.status_code == 503, r.text
    # Three target durations (2 s segments), not a hang.
    assert time.monotonic() - started < 15
    hinted = re.search(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^"]*)"', text).group(1)
    r = requests.get(url.rsplit("/", 1)[0] + "/" + hinted, timeout=30)
    assert r.status_code == 503
    # Too far ahead is refused at once; the growing segment is not served whole.
    assert requests.get(f"{url}?_HLS_msn={msn + 3}", timeout=5).status_code == 400
    whole = url.rsplit("/", 1)[0] + "/" + hinted.replace(f".{part}.m4s", ".m4s")
    assert requests.get(whole, timeout=5).status_code in (404, 412)
    encoder.close()


def test_a_channel_removed_and_made_again_while_requests_are_held(make_nginx):
    """A held reload whose channel's archive is removed is answered at once (not at its
    deadline); the channel pushed again is watched anew, so its held reloads wake."""
    n, chunks, encoder, url, text = pushed_origin(make_nginx)
    encoder.close()
    held = HeldReload(url, text)
    time.sleep(0.3)
    started = time.monotonic()
    shutil.rmtree(n.root / "live" / "ll.isml.archive")
    assert held.answer().status_code == 404
    assert time.monotonic() - started < 1.5
    init, _ = chunked_cmaf()
    again = Encoder(n.url("/live/ll.isml/Streams(video.cmfv)"), init, chunks[0])
    text = wait_for(lambda: ok_text(url))
    held = HeldReload(url, text)
    time.sleep(0.3)
    started = time.monotonic()
    again.send(chunks[1])
    assert held.answer().status_code == 200
    assert time.monotonic() - started < 1.5
    again.close()


def test_a_reload_of_nginx_while_requests_are_held(make_nginx):
    n, chunks, encoder, url, text = pushed_origin(make_nginx)
    held = HeldReload(url, text)
    time.sleep(0.5)
    os.kill(n.master_pid(), signal.SIGHUP)
    time.sleep(0.5)
    # The encoder's POST lives in the old worker; the held request is woken by its write.
    encoder.send(chunks[1])
    assert held.answer().status_code == 200, held.answer().text
    encoder.close()


def test_two_origins_fed_the_same_stream_are_interchangeable(make_nginx):
    """One encoder's output, timestamped in UTC as the DASH-IF ingest specification
    recommends, goes to two origins; the second joins eight chunks (two segments) late. For
    every segment both list, the URLs, media sequence numbers, parts, availabilityStartTime and
    segment bytes are the same: a CDN may fail over between them mid-stream."""
    init, chunks = chunked_cmaf()
    utc = int(time.time()) * timescale_of(init)
    chunks = [shift_fragment(c, utc) for c in chunks[:22]]
    origins = []
    for _ in range(2):
        n = make_nginx(workers=1)
        d = n.root / "live"
        d.mkdir()
        d.chmod(0o777)
        # The channel declares its segment length (the encoder's GOP): numbers come from it.
        (d / "ll.isml").write_text(LL_CHANNEL.replace(
            "<head>", '<head><meta name="hls_minimum_fragment_length" content="2"/>'))
        (d / "ll.isml").chmod(0o666)
        n.start(LIVE_LOCATION)
        origins.append(n)
    first, late = origins
    a = Encoder(first.url("/live/ll.isml/Streams(video.cmfv)"), init, chunks[0])
    for c in chunks[1:9]:
        a.send(c)
    time.sleep(0.5)
    b = Encoder(late.url("/live/ll.isml/Streams(video.cmfv)"), init, chunks[8])
    for c in chunks[9:]:
        a.send(c)
        b.send(c)
    a.close()
    b.close()
    assert a.status == b.status == 200

    def get(n, path):
        r = requests.get(n.url(f"/live/ll.isml/{path}"), timeout=10)
        assert r.status_code == 200, (path, r.status_code, r.text)
        return r

    assert get(first, ".m3u8?hls_fmp4").text == get(late, ".m3u8?hls_fmp4").text
    uri = next(line for line in get(late, ".m3u8?hls_fmp4").text.splitlines()
               if line.startswith("hls/")).split("?")[0]

    def entries(text):
        """Each segment and part URI with the media sequence number it has."""
        msn = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text).group(1))
        out = {}
        for line in text.splitlines():
            if line.startswith("#EXT-X-PART:"):
                out[re.search(r'URI="([^"]*)"', line).group(1)] = msn
            elif line and not line.startswith("#"):
                out[line] = msn
                msn += 1
        return out

    mine, theirs = entries(get(first, uri).text), entries(get(late, uri).text)
    shared = [u for u in theirs if u in mine]
    assert len(shared) >= 6, (mine, theirs)
    for u in shared:
        assert mine[u] == theirs[u], u
        base = uri.rsplit("/", 1)[0]
        assert get(first, f"{base}/{u}").content == get(late, f"{base}/{u}").content, u
    # DASH: the same availabilityStartTime, timeline and segments.
    mpds = [get(n, ".mpd").text for n in origins]
    starts = [re.search(r'availabilityStartTime="([^"]*)"', m).group(1) for m in mpds]
    assert starts[0] == starts[1], starts
    lines = [timeline(m) for m in mpds]
    assert lines[1] and lines[1] == lines[0][-len(lines[1]):], lines
    rep = re.search(r'<Representation id="([^"]*)"', mpds[1]).group(1)
    assert rep == re.search(r'<Representation id="([^"]*)"', mpds[0]).group(1)
    # The newest complete segment (the last one listed is being produced: its answer would
    # stream until the encoder's next chunk, which this test never sends).
    t = lines[1][-2][0]
    segment = f"dash/ll-{rep}-{t}.dash"
    assert get(first, segment).content == get(late, segment).content
