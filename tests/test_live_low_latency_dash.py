"""Low-latency live (LL-DASH): the MPD of a low-latency channel lists the segment being
produced (`availabilityTimeOffset`, `availabilityTimeComplete="false"`) with a service
description and a producer reference time; a request for that segment is answered at once with
chunked transfer and each chunk follows as it lands, from an ingest in another nginx; the
streamed segment and the segment asked for whole afterwards are the same bytes."""

from __future__ import annotations

import datetime
import os
import signal
import statistics
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET

import requests

from helpers.live import timeline
from test_live_low_latency import (LIVE_LOCATION, Encoder, chunked_cmaf, ingest_and_player,
                                   ll_channel, ok_text, wait_for)

NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}


def boxes(data: bytes) -> list[str]:
    out, at = [], 0
    while at + 8 <= len(data):
        size = int.from_bytes(data[at:at + 4], "big")
        assert size >= 8, data[at:at + 8]
        out.append(data[at + 4:at + 8].decode("latin-1"))
        at += size
    assert at == len(data), "the body ends inside a box"
    return out


def video_timeline(mpd_text: str):
    """The video adaptation set's SegmentTemplate, Representation id and segment starts."""
    mpd = ET.fromstring(mpd_text)
    video = next(a for a in mpd.iterfind(".//d:AdaptationSet", NS)
                 if a.get("contentType") == "video")
    template = video.find("d:SegmentTemplate", NS)
    rep = video.find("d:Representation", NS).get("id")
    return mpd, video, template, rep, [t for t, _ in timeline(mpd_text)]


class StreamedGet:
    """A GET read as it arrives, in a thread of its own: `pieces` holds (time, bytes) of every
    piece the client received (monotonic clock)."""

    def __init__(self, url: str):
        self.pieces: list[tuple[float, bytes]] = []
        self.response = None
        self.ended_at = None
        self.thread = threading.Thread(target=self._get, args=(url,), daemon=True)
        self.thread.start()

    def _get(self, url):
        r = requests.get(url, stream=True, timeout=60)
        self.response = r
        for piece in r.iter_content(chunk_size=None):
            self.pieces.append((time.monotonic(), piece))
        self.ended_at = time.monotonic()

    def received(self) -> int:
        return sum(len(p) for _, p in self.pieces)

    def body(self) -> bytes:
        self.thread.join(60)
        assert self.ended_at is not None, "the response never ended"
        return b"".join(p for _, p in self.pieces)


def next_segment_started(player, encoder, chunks, k, known):
    """Sends chunks from `k` until one starts a new video segment; returns (its index in
    `chunks`, the MPD listing it)."""
    while True:
        encoder.send(chunks[k])
        until = time.monotonic() + 1.0
        while time.monotonic() < until:
            text = ok_text(player.url("/live/ll.isml/.mpd"))
            if text and video_timeline(text)[4][-1] not in known:
                return k, text
            time.sleep(0.05)
        k += 1


def test_the_segment_being_produced_is_streamed_chunk_by_chunk(make_nginx):
    init, chunks = chunked_cmaf()
    ingest, player = ingest_and_player(make_nginx)
    encoder = Encoder(ingest.url("/live/ll.isml/Streams(video.cmfv)"), init, chunks[0])
    text = wait_for(lambda: ok_text(player.url("/live/ll.isml/.mpd")))
    mpd, video, template, rep, starts = video_timeline(text)
    # Read anew every time: it changes with every chunk, and its UTCTiming is now.
    mpd_headers = requests.get(player.url("/live/ll.isml/.mpd"), timeout=10).headers
    assert mpd_headers["Cache-Control"] == "max-age=0"
    # A low-latency MPD, as an independent XML parser reads it.
    assert mpd.get("type") == "dynamic"
    assert template.get("availabilityTimeComplete") == "false"
    # Each segment can be asked for from its start: the offset is the longest segment
    # listed, which is also maxSegmentDuration (a player's live edge is then the wall clock's
    # media time).
    longest = float(mpd.get("maxSegmentDuration").removeprefix("PT").removesuffix("S"))
    assert float(template.get("availabilityTimeOffset")) == longest
    timescale = int(template.get("timescale"))
    durations = [int(s.get("d")) / timescale for s in template.iterfind(".//d:S", NS)]
    assert durations and max(durations) <= longest < max(durations) + 0.002, (durations, text)
    latency = mpd.find("d:ServiceDescription/d:Latency", NS)
    assert latency is not None and int(latency.get("target")) >= 1000, text
    assert int(latency.get("min")) <= int(latency.get("target")) <= int(latency.get("max"))
    rate = mpd.find("d:ServiceDescription/d:PlaybackRate", NS)
    assert float(rate.get("min")) < 1 < float(rate.get("max"))
    prt = video.find("d:ProducerReferenceTime", NS)
    assert prt.get("id") == latency.get("referenceId") and prt.get("inband") == "true"
    # Clocks: the origin's, beside the MPD and timed by the player, then the MPD's own time.
    timings = mpd.findall("d:UTCTiming", NS)
    assert [t.get("schemeIdUri") for t in timings] == [
        "urn:mpeg:dash:utc:http-xsdate:2014", "urn:mpeg:dash:utc:direct:2014"], text
    clock = requests.get(urllib.parse.urljoin(player.url("/live/ll.isml/.mpd"),
                                                 timings[0].get("value")), timeout=10)
    assert clock.status_code == 200 and clock.headers["Content-Type"] == "text/plain"
    assert clock.headers["Cache-Control"] == "no-store"
    assert not {"ETag", "Last-Modified", "Accept-Ranges"} & set(clock.headers), clock.headers
    told = datetime.datetime.fromisoformat(clock.text.replace("Z", "+00:00"))
    assert clock.text.endswith("Z") and len(clock.text) == len("2026-12-07T08:58:36.069Z")
    assert abs(told.timestamp() - time.time()) < 5, clock.text
    # Catch a segment as it starts, and ask for it at once.
    k, text = next_segment_started(player, encoder, chunks, 1, starts)
    _, _, template, rep, starts = video_timeline(text)
    url = player.url(f"/live/ll.isml/dash/ll-{rep}-{starts[-1]}.dash")
    streamed = StreamedGet(url)
    wait_for(lambda: streamed.received() > 0)
    assert streamed.response.status_code == 200
    assert "Content-Length" not in streamed.response.headers
    assert streamed.response.headers.get("Transfer-Encoding") == "chunked"
    assert streamed.pieces[0][1][4:8] == b"styp"
    # Each chunk the encoder sends reaches the client while the segment grows.
    waits = []
    for chunk in chunks[k + 1:]:
        before = streamed.received()
        sent = encoder.send(chunk)
        # The chunk that starts the next GOP ends this segment: its response ends.
        wait_for(lambda: streamed.received() > before or streamed.ended_at)
        if streamed.ended_at:
            break
        waits.append(streamed.pieces[-1][0] - sent)
        time.sleep(0.1)
    body = streamed.body()
    assert waits, "the segment ended before a second chunk"
    kinds = boxes(body)
    assert kinds[:4] == ["styp", "prft", "moof", "mdat"], kinds
    assert kinds.count("moof") == len(waits) + 1, kinds
    assert kinds.count("styp") == 1 and kinds.count("prft") == kinds.count("moof")
    # Asked for again, complete: the same bytes, with a length and a validator.
    whole = requests.get(url, timeout=10)
    assert whole.status_code == 200 and whole.content == body
    assert int(whole.headers["Content-Length"]) == len(body) and "ETag" in whole.headers
    encoder.close()
    waits.sort()
    print(f"streamed chunk reached the client after it was sent: p50 "
          f"{statistics.median(waits) * 1000:.1f} ms, max {waits[-1] * 1000:.1f} ms over "
          f"{len(waits)} chunks")


def test_a_streamed_segment_ends_when_the_encoder_stops_or_goes(make_nginx):
    init, chunks = chunked_cmaf()
    ingest, player = ingest_and_player(make_nginx)
    encoder = Encoder(ingest.url("/live/ll.isml/Streams(video.cmfv)"), init, chunks[0])
    text = wait_for(lambda: ok_text(player.url("/live/ll.isml/.mpd")))
    k, text = next_segment_started(player, encoder, chunks, 1, video_timeline(text)[4])
    _, _, _, rep, starts = video_timeline(text)
    url = player.url(f"/live/ll.isml/dash/ll-{rep}-{starts[-1]}.dash")
    # The encoder stalls mid-segment (its POST still open): the answer ends by its deadline
    # (three segment lengths) with the chunks there are, whole boxes.
    started = time.monotonic()
    stalled = StreamedGet(url)
    body = stalled.body()
    assert stalled.response.status_code == 200
    assert boxes(body)[:4] == ["styp", "prft", "moof", "mdat"]
    assert 2.0 < stalled.ended_at - started < 20
    # The encoder ends its stream mid-segment (`mfra`): the segment is complete, and a
    # request held on it ends at once rather than at its deadline.
    encoder.send(chunks[k + 1])
    held = StreamedGet(url)
    wait_for(lambda: held.received() > 0)
    time.sleep(0.3)
    closed_at = time.monotonic()
    encoder.send(len(b"mfra" + bytes(12)).to_bytes(4, "big") + b"mfra" + bytes(8))
    encoder.close()
    assert encoder.status == 200
    body = held.body()
    assert held.ended_at - closed_at < 2.0
    assert boxes(body).count("moof") == 2
    assert requests.get(url, timeout=10).content == body


def test_a_reload_of_nginx_while_a_segment_streams(make_nginx):
    """nginx reloads (SIGHUP) while a segment streams: the old worker finishes the answer as the
    chunks keep coming, and the segment is complete and whole."""
    init, chunks = chunked_cmaf()
    n = make_nginx(workers=1)
    ll_channel(n.root)
    n.start(LIVE_LOCATION)
    encoder = Encoder(n.url("/live/ll.isml/Streams(video.cmfv)"), init, chunks[0])
    text = wait_for(lambda: ok_text(n.url("/live/ll.isml/.mpd")))
    k, text = next_segment_started(n, encoder, chunks, 1, video_timeline(text)[4])
    _, _, _, rep, starts = video_timeline(text)
    url = n.url(f"/live/ll.isml/dash/ll-{rep}-{starts[-1]}.dash")
    streamed = StreamedGet(url)
    wait_for(lambda: streamed.received() > 0)
    os.kill(n.master_pid(), signal.SIGHUP)
    time.sleep(0.5)
    for chunk in chunks[k + 1:]:
        before = streamed.received()
        encoder.send(chunk)
        wait_for(lambda: streamed.received() > before or streamed.ended_at)
        if streamed.ended_at:
            break
    body = streamed.body()
    assert boxes(body).count("moof") >= 2
    assert requests.get(url, timeout=10).content == body
    encoder.close()


def test_a_worker_streams_at_most_origin_live_max_held_segments(make_nginx):
    """Streamed segments count among a worker's held requests: past `origin_live_max_held`
    the next one is 503 before anything is sent, and those streaming carry on to the end."""
    init, chunks = chunked_cmaf()
    n = make_nginx(workers=1)
    ll_channel(n.root)
    n.start(LIVE_LOCATION, http_extra="origin_live_max_held 2;")
    encoder = Encoder(n.url("/live/ll.isml/Streams(video.cmfv)"), init, chunks[0])
    text = wait_for(lambda: ok_text(n.url("/live/ll.isml/.mpd")))
    k, text = next_segment_started(n, encoder, chunks, 1, video_timeline(text)[4])
    _, _, _, rep, starts = video_timeline(text)
    url = n.url(f"/live/ll.isml/dash/ll-{rep}-{starts[-1]}.dash")
    streaming = [StreamedGet(url) for _ in range(2)]
    wait_for(lambda: all(s.received() > 0 for s in streaming))
    third = requests.get(url, timeout=5)
    assert third.status_code == 503, third.status_code
    assert "Transfer-Encoding" not in third.headers
    assert "already holds 2 requests (origin_live_max_held)" in n.log_text(), \
        n.log_text()[-2000:]
    for chunk in chunks[k + 1:]:
        encoder.send(chunk)
        if all(s.ended_at for s in streaming):
            break
        time.sleep(0.1)
    bodies = [s.body() for s in streaming]
    assert all(s.response.status_code == 200 for s in streaming)
    assert bodies[0] == bodies[1] == requests.get(url, timeout=10).content
    encoder.close()
    assert n.crashes() == []
