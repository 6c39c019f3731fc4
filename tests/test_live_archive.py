"""Archives longer than the DVR window: a worker keeps each track's newest records in memory
(the window and its margins) and reads older ones from the records file for the requests that
reach them (vbegin/vend, time_shift, the Live API's `archive`, the whole archive once the
stream ended). What those requests answer must not depend on that: a channel with a short
window answers as one with a window longer than its archive. And the worker's memory must not
grow with the archive's length."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

import requests

from helpers.archive import lengthen, timescale_of
from helpers.live import cmaf_stream, live_dir, shift_fragment, timeline

SMIL = "{http://www.w3.org/2001/SMIL20/Language}"
LIVE_LOCATION = """
        location /live/ {
            usp_handle_ism;
            client_max_body_size 0;
        }"""


def channel(d: Path, name: str, dvr_window: int) -> None:
    (d / f"{name}.isml").write_text(
        '<smil xmlns="http://www.w3.org/2001/SMIL20/Language"><head>'
        f'<meta name="dvr_window_length" content="{dvr_window}"/>'
        '<meta name="archiving" content="true"/></head><body/></smil>')
    (d / f"{name}.isml").chmod(0o666)


def styp(*brands: bytes) -> bytes:
    return (8 + 4 * len(brands) + 4).to_bytes(4, "big") + b"styp" + brands[0] + b"\0\0\0\0" + \
        b"".join(brands[1:])


def archive_ranges(origin, name: str) -> list[float]:
    """The length in seconds of each range the Live API's `archive` report lists."""
    report = origin.get(f"/live/{name}.isml/archive")
    assert report.status_code == 200, report.text
    parse = lambda t: datetime.fromisoformat(t.replace("Z", "+00:00"))  # noqa: E731
    return [(parse(c.get("end")) - parse(c.get("start"))).total_seconds()
            for c in ET.fromstring(report.content).iter(f"{SMIL}c")]


def test_a_short_window_answers_as_a_long_one_beyond_its_window(make_nginx):
    n = make_nginx(workers=1)
    d = live_dir(n)
    # `short` keeps 16 records (32 s) of its 80 in memory; `long` keeps all of them.
    channel(d, "short", 2)
    channel(d, "long", 3600)
    n.start(LIVE_LOCATION)
    init, fragments = cmaf_stream(n, loops=19)
    assert len(fragments) == 40
    for name in ("short", "long"):
        r = requests.post(n.url(f"/live/{name}.isml/Streams(video.cmfv)"),
                          data=init + b"".join(fragments))
        assert r.status_code == 200, r.text
    whole = timeline(n.get("/live/long.isml/.mpd").text)
    assert len(whole) == 40
    assert timeline(n.get("/live/short.isml/.mpd").text) == whole[-3:]

    def same(query: str) -> list:
        short = n.get(f"/live/short.isml/.mpd{query}")
        long = n.get(f"/live/long.isml/.mpd{query}")
        assert short.status_code == long.status_code == 200, (query, short.text)
        assert timeline(short.text) == timeline(long.text), query
        assert ET.fromstring(short.content).get("type") == ET.fromstring(long.content).get("type")
        return timeline(short.text)

    # A part of the archive older than what is kept, and one that reaches the live edge.
    assert same("?vbegin=10&vend=30") == whole[5:15]
    assert same("?vbegin=60") == whole[30:]
    # time_shift 40 s: the window ends where the kept records are long gone.
    assert timeline(n.get("/live/short.isml/.mpd?time_shift=40").text) == whole[17:20]
    # A segment of the old part, as either channel makes it.
    mpd = n.get("/live/short.isml/.mpd?vbegin=10&vend=30").text
    rep = re.search(r'Representation id="([^"]*)"', mpd).group(1)
    t = whole[6][0]
    short = n.get(f"/live/short.isml/dash/short-{rep}-{t}.dash?vbegin=10&vend=30")
    long = n.get(f"/live/long.isml/dash/long-{rep}-{t}.dash?vbegin=10&vend=30")
    assert short.status_code == long.status_code == 200
    assert short.content == long.content
    # The Live API reads every record: one range of 80 s.
    assert archive_ranges(n, "short") == archive_ranges(n, "long") == [80.0]
    # The stream ends: the whole archive plays, from the file.
    last = shift_fragment(fragments[-1], whole[-1][1])
    for name in ("short", "long"):
        r = requests.post(n.url(f"/live/{name}.isml/Streams(video.cmfv)"),
                          data=styp(b"msdh", b"msdh", b"lmsg") + last)
        assert r.status_code == 200, r.text
    assert same("") == whole + [(whole[-1][0] + whole[-1][1], whole[-1][1])]
    assert ET.fromstring(n.get("/live/short.isml/.mpd").content).get("type") == "static"


def rss_anon_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    return 0


def test_a_worker_holds_the_window_not_the_archive(make_nginx):
    """A million records (23 days of 2-second fragments): before, each worker held all of them
    (64 MB) and read them all again after every new fragment."""
    n = make_nginx(workers=1)
    d = live_dir(n)
    channel(d, "year", 30)
    n.start(LIVE_LOCATION)
    init, fragments = cmaf_stream(n, loops=1)
    url = n.url("/live/year.isml/Streams(video.cmfv)")
    assert requests.post(url, data=init + fragments[0]).status_code == 200
    n.stop()
    track = next(p for p in (d / "year.isml.archive").iterdir() if (p / "records").exists())
    count = 1_000_000
    dur = lengthen(track, init, fragments[0], count)
    n.start(LIVE_LOCATION)
    window = timeline(n.get("/live/year.isml/.mpd").text)
    assert len(window) == 15 and window[-1] == ((count - 1) * dur, dur)
    for k in range(count, count + 5):
        assert requests.post(url, data=shift_fragment(fragments[0], k * dur)).status_code == 200
        window = timeline(n.get("/live/year.isml/.mpd").text)
        assert window[-1] == (k * dur, dur)
    assert archive_ranges(n, "year") == [(count + 5) * dur / timescale_of(init)]
    worker = n.worker_pids()[0]
    # The worker's own memory (the records file's pages are the kernel's page cache).
    assert rss_anon_kb(worker) < 24 * 1024, rss_anon_kb(worker)
