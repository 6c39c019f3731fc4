"""Live channels: real encoders (ffmpeg) push to `<ch>.isml/Streams(…)`, real clients read the
channel while it is live and its archive after the stream ended.

Every push runs in real time (`-re`), so these tests take the length of their media."""

import os
import re
import signal
import socket
import subprocess
import threading
import time
import xml.etree.ElementTree as ET

import pytest
import requests

from harness import wait_for
from helpers.live import (SOURCE, cmaf_pieces, cmaf_stream, example_origin, live_dir, packets,
                          timeline)
from helpers.media import ISMTOOL, MPD_NS

LOOPS = 3  # pushes of 4 × 4 s = 16 s
SMIL = "{http://www.w3.org/2001/SMIL20/Language}"


LIVE_LOCATION = """
        location /live/ {
            usp_handle_ism;
            origin_live_auto_create on;
            client_max_body_size 0;
        }"""


@pytest.fixture
def live(make_nginx):
    n = make_nginx(workers=2)
    live_dir(n)
    n.start(LIVE_LOCATION)
    return n


def sent_copy(origin, channel, name):
    """Where a push also writes what it sends, to compare the archive with."""
    return origin.prefix / f"{channel}-{name}"


def push_smooth(origin, channel, stream="s1", loops=LOOPS, source=SOURCE, extra=(), copy=None):
    """ffmpeg pushing Smooth (`-f ismv`) in real time: one chunked POST with all tracks. It
    writes the same stream to a file too (`sent_copy`): looping a file is the encoder's doing,
    and the archive must hold exactly what it sent."""
    smooth = ["-c", "copy", *extra, "-movflags", "+isml+delay_moov", "-f", "ismv"]
    return subprocess.Popen(
        ["ffmpeg", "-v", "error", "-re", "-stream_loop", str(loops), "-i", str(source),
         *smooth, origin.url(f"/live/{channel}.isml/Streams({stream})"),
         *smooth, "-y", str(sent_copy(origin, channel, copy or stream + ".ismv"))],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def push_file(url):
    """ffmpeg pushing the source once, as fast as it can (Smooth, one POST)."""
    return subprocess.Popen(["ffmpeg", "-v", "error", "-i", str(SOURCE), "-c", "copy",
                             "-movflags", "+isml", "-f", "ismv", url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def push_cmaf(origin, channel, loops=LOOPS, video_flags="+frag_keyframe", realtime=True):
    """ffmpeg pushing CMAF, one long POST per track (DASH-IF ingest interface 1)."""
    url = origin.url(f"/live/{channel}.isml/Streams")
    re_flag = ["-re"] if realtime else []
    video = ["-map", "0:v", "-c", "copy", "-movflags",
             f"empty_moov+separate_moof+default_base_moof+cmaf{video_flags}", "-f", "mp4"]
    audio = ["-map", "0:a", "-c", "copy", "-frag_duration", "2000000", "-movflags",
             "empty_moov+separate_moof+default_base_moof+cmaf", "-f", "mp4"]
    return subprocess.Popen(
        ["ffmpeg", "-v", "error", *re_flag, "-stream_loop", str(loops), "-i", str(SOURCE),
         *video, f"{url}(video.cmfv)", *audio, f"{url}(audio.cmfa)",
         *video, "-y", str(sent_copy(origin, channel, "video.cmfv")),
         *audio, "-y", str(sent_copy(origin, channel, "audio.cmfa"))],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=90, origin=None, channel=None):
    """Waits for an encoder to exit; with `origin` and `channel`, also until the origin has
    taken the end of its stream (an encoder may exit before the origin has read its last
    bytes)."""
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    if origin is not None:
        wait_for(lambda: state(origin, channel) == "stopped", what=f"the end of {channel}")


def decoded(url, stream, loops=0):
    args = ["ffmpeg", "-v", "error"]
    if loops:
        args += ["-stream_loop", str(loops)]
    out = subprocess.run([*args, "-i", url, "-map", stream, "-f", "framemd5", "-"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [line.rsplit(",", 1)[1].strip() for line in out.stdout.splitlines()
            if line and not line.startswith("#")]


def state(origin, channel):
    r = origin.get(f"/live/{channel}.isml/state")
    if r.status_code != 200:
        return None
    metas = {m.get("name"): m.get("content") for m in ET.fromstring(r.content).iter(f"{SMIL}meta")}
    return metas["state"]


def variant_playlist(origin, channel):
    master = origin.get(f"/live/{channel}.isml/.m3u8").text
    uri = next(line for line in master.splitlines() if line and not line.startswith("#"))
    return f"/live/{channel}.isml/{uri}"


class Observer(threading.Thread):
    """Polls the live manifests while a push runs and records what players would see."""

    TFRF = bytes.fromhex("d4807ef2ca3946958e5426cb9e46a79f")

    def smooth_lookahead(self, manifest):
        """Whether the first video fragment of a live Smooth manifest carries `tfrf` (live
        players require it; it announces the fragments after it that the origin holds)."""
        index = ET.fromstring(manifest).find("StreamIndex[@Type='video']")
        chunk = index.find("c")
        bitrate = index.find("QualityLevel").get("Bitrate")
        url = index.get("Url").replace("{bitrate}", bitrate).replace("{start time}",
                                                                       chunk.get("t", "0"))
        fragment = self.origin.get(f"/live/{self.channel}.isml/{url}")
        return fragment.status_code == 200 and self.TFRF in fragment.content

    def __init__(self, origin, channel):
        super().__init__(daemon=True)
        self.origin, self.channel = origin, channel
        self.stop = threading.Event()
        self.mpds, self.playlists, self.smooth, self.errors = [], [], [], []
        self.depths, self.tfrf = [], False

    def run(self):
        playlist = None
        while not self.stop.is_set():
            try:
                r = self.origin.get(f"/live/{self.channel}.isml/.mpd")
                if r.status_code == 200:
                    self.mpds.append((r.text, r.headers.get("Cache-Control")))
                    playlist = playlist or variant_playlist(self.origin, self.channel)
                    p = self.origin.get(playlist)
                    self.playlists.append(p.text)
                    m = self.origin.get(f"/live/{self.channel}.isml/Manifest")
                    self.smooth.append(m.text)
                    if not self.tfrf and 'IsLive="TRUE"' in m.text:
                        self.tfrf = self.smooth_lookahead(m.text)
                    short = self.origin.get(f"/live/{self.channel}.isml/.mpd?dvr_window_length=4")
                    long = self.origin.get(f"/live/{self.channel}.isml/.mpd?dvr_window_length=999")
                    self.depths.append((ET.fromstring(short.content).get("timeShiftBufferDepth"),
                                        ET.fromstring(long.content).get("timeShiftBufferDepth")))
                    # Every segment a live playlist lists answers.
                    for uri in [ln for ln in p.text.splitlines() if ln and ln[0] != "#"][-3:]:
                        s = self.origin.get(playlist.rsplit("/", 1)[0] + "/" + uri)
                        if s.status_code != 200:
                            self.errors.append((uri, s.status_code))
            except requests.RequestException as e:
                self.errors.append(str(e))
            time.sleep(0.3)


def test_smooth_push_plays_live_and_then_as_its_archive(live):
    push = push_smooth(live, "ch1")
    watcher = Observer(live, "ch1")
    try:
        wait_for(lambda: live.get("/live/ch1.isml/.mpd").status_code == 200,
                 what="the first fragment")
        watcher.start()
        assert state(live, "ch1") == "started"
        # ffmpeg plays the live HLS and DASH presentations while the push goes on.
        for manifest in (".m3u8", ".mpd"):
            out = subprocess.run(["ffmpeg", "-v", "error", "-i", live.url(f"/live/ch1.isml/{manifest}"),
                                  "-t", "3", "-f", "null", "-"],
                                 capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
        finish(push, origin=live, channel="ch1")
    finally:
        watcher.stop.set()
        push.kill()
    watcher.join()
    assert not watcher.errors, watcher.errors
    assert len(watcher.mpds) >= 3

    # Live DASH: dynamic, one availabilityStartTime, publishTime never going back.
    starts, published = set(), []
    for text, cache_control in watcher.mpds:
        mpd = ET.fromstring(text)
        if mpd.get("type") != "dynamic":
            continue
        assert cache_control == "max-age=1"
        starts.add(mpd.get("availabilityStartTime"))
        published.append(mpd.get("publishTime"))
        assert mpd.get("timeShiftBufferDepth") == "PT30.000S"
        assert mpd.find("d:UTCTiming", MPD_NS) is not None
        assert mpd.get("mediaPresentationDuration") is None
        assert mpd.get("minimumUpdatePeriod") and mpd.get("suggestedPresentationDelay")
    assert len(starts) == 1 and published == sorted(published)
    # Live HLS: a sliding playlist whose media sequence never goes back.
    sequences = []
    for text in watcher.playlists:
        if "#EXT-X-ENDLIST" in text:
            continue
        assert "#EXT-X-PROGRAM-DATE-TIME:" in text and "#EXT-X-PLAYLIST-TYPE" not in text
        sequences.append(int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text).group(1)))
    assert sequences and sequences == sorted(sequences)
    assert any('IsLive="TRUE"' in m and "DVRWindowLength" in m for m in watcher.smooth)
    assert watcher.tfrf
    # ?dvr_window_length= asks for less than the channel keeps, never more.
    live_depths = [d for d in watcher.depths if d[0] is not None]
    assert live_depths and all(d == ("PT4.000S", "PT30.000S") for d in live_depths)

    # After the end of the stream: stopped, static, complete, and frame-exact.
    assert state(live, "ch1") == "stopped"
    mpd = live.get("/live/ch1.isml/.mpd")
    assert ET.fromstring(mpd.content).get("type") == "static"
    assert "#EXT-X-ENDLIST" in live.get(variant_playlist(live, "ch1")).text
    sent = str(sent_copy(live, "ch1", "s1.ismv"))
    for stream in ("0:v", "0:a"):
        assert packets(live.url("/live/ch1.isml/.mpd"), stream) == packets(sent, stream)
    assert decoded(live.url("/live/ch1.isml/.m3u8"), "0:v") == decoded(sent, "0:v")
    # The archive has one range per track; statistics count what came in.
    archive = ET.fromstring(live.get("/live/ch1.isml/archive").content)
    assert [len(list(t.iter(f"{SMIL}c"))) for t in archive.iter(f"{SMIL}video")] == [1]
    stats = live.get("/live/ch1.isml/statistics?format=json").json()
    assert stats["state"] == "stopped"
    assert all(t["fragments"] >= 8 and t["bytes"] > 0 for t in stats["tracks"])
    assert all(t["encoder"] == "127.0.0.1" for t in stats["tracks"])


def test_live_fragments_carry_expiry_and_their_status_outside_the_window(live):
    finish(push_smooth(live, "ch2", loops=1), origin=live, channel="ch2")
    mpd = live.get("/live/ch2.isml/.mpd").text
    video = timeline(mpd)
    rep = re.search(r'Representation id="(video[^"]*)"', mpd).group(1)
    first_t, _ = video[0]
    last_t, last_d = video[-1]
    ok = live.get(f"/live/ch2.isml/dash/ch2-{rep}-{first_t}.dash")
    assert ok.status_code == 200
    assert ok.headers["Cache-Control"].startswith("max-age=")
    assert "Sunset" in ok.headers
    # A fragment was last modified when it was ingested, the manifest with the newest one
    # (the push ran in real time: seconds apart).
    from email.utils import parsedate_to_datetime
    newest = parsedate_to_datetime(live.get("/live/ch2.isml/.mpd").headers["Last-Modified"])
    first = parsedate_to_datetime(ok.headers["Last-Modified"])
    assert (newest - first).total_seconds() >= 3
    # After the live edge: 404 for DASH, 412 for Smooth.
    assert live.get(f"/live/ch2.isml/dash/ch2-{rep}-{last_t + last_d}.dash").status_code == 404
    name, bitrate = rep.split("=")
    assert live.get(f"/live/ch2.isml/QualityLevels({bitrate})/Fragments({name}={last_t + last_d})"
                    ).status_code == 412
    # Inside the window where no fragment starts: 404 for DASH, 412 for Smooth.
    assert live.get(f"/live/ch2.isml/dash/ch2-{rep}-{first_t + 1}.dash").status_code == 404
    assert live.get(f"/live/ch2.isml/QualityLevels({bitrate})/Fragments({name}={first_t + 1})"
                    ).status_code == 412


def test_cmaf_push_one_post_per_track(live):
    finish(push_cmaf(live, "ch3"), origin=live, channel="ch3")
    assert state(live, "ch3") == "stopped"
    manifest = (live.root / "live" / "ch3.isml").read_text()
    assert 'trackName" value="video"' in manifest and 'trackName" value="audio"' in manifest
    for stream, sent in (("0:v", "video.cmfv"), ("0:a", "audio.cmfa")):
        assert packets(live.url("/live/ch3.isml/.mpd"), stream) == \
            packets(str(sent_copy(live, "ch3", sent)), "0:0")


def test_one_moof_per_frame_is_assembled_into_gops(live):
    finish(push_cmaf(live, "ch4", loops=1, video_flags="+frag_every_frame", realtime=False),
           origin=live, channel="ch4")
    mpd = live.get("/live/ch4.isml/.mpd").text
    durations = [d for _, d in timeline(mpd)]
    # 2-second GOPs (a frame more where the encoder loops its file), not 40 ms frames.
    timescale = int(re.search(r'timescale="(\d+)"', mpd).group(1))
    assert len(durations) == 4
    assert all(abs(d - 2 * timescale) <= timescale // 25 for d in durations), durations
    assert packets(live.url("/live/ch4.isml/.mpd"), "0:v") == \
        packets(str(sent_copy(live, "ch4", "video.cmfv")), "0:0")


def test_redundant_encoders_give_each_fragment_once(live):
    a = push_smooth(live, "ch5")
    b = push_smooth(live, "ch5", copy="b.ismv")
    finish(a)
    finish(b, origin=live, channel="ch5")
    video = timeline(live.get("/live/ch5.isml/.mpd").text)
    assert len(video) == 2 * (LOOPS + 1)
    assert all(t1 == t0 + d0 for (t0, d0), (t1, _) in zip(video, video[1:]))
    assert packets(live.url("/live/ch5.isml/.mpd"), "0:v") == \
        packets(str(sent_copy(live, "ch5", "s1.ismv")), "0:v")
    stats = live.get("/live/ch5.isml/statistics?format=json").json()
    assert sum(t["duplicates"] for t in stats["tracks"]) > 0


def test_per_segment_posts_and_refusals(live):
    init, fragments = cmaf_pieces()
    url = live.url("/live/ch6.isml/Streams(video.cmfv)")
    # Media before any init: 412, and nothing is created.
    assert requests.post(url, data=fragments[0]).status_code == 412
    assert live.get("/live/ch6.isml/.mpd").status_code == 404
    assert requests.post(url, data=init).status_code == 200
    for f in fragments:
        assert requests.post(url, data=f).status_code == 200
    # A re-sent init and a re-sent fragment change nothing.
    assert requests.post(url, data=init).status_code == 200
    assert requests.post(url, data=fragments[0]).status_code == 200
    video = timeline(live.get("/live/ch6.isml/.mpd").text)
    assert len(video) == len(fragments)
    # Garbage, a truncated moov, GET on the ingest URL: refused.
    assert requests.post(url, data=b"\x00\x00\x00\x10junkjunkjunk").status_code == 400
    assert requests.post(live.url("/live/ch7.isml/Streams(x)"), data=init[:100]).status_code == 400
    assert live.get("/live/ch6.isml/Streams(video.cmfv)").status_code == 405
    assert len(timeline(live.get("/live/ch6.isml/.mpd").text)) == len(fragments)


# ------------------------------------------------------------------ faults

def chunked_post(origin, path, pieces, *, abort=False, pause=0.0):
    """POSTs `pieces` as chunks of one chunked body; `abort` drops the connection instead of
    ending the body (an encoder killed mid-fragment). Returns the status, or None (aborted, or
    no answer came)."""
    s = socket.create_connection(("127.0.0.1", origin.port), timeout=60)
    try:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                  "Connection: close\r\n\r\n".encode())
        for p in pieces:
            s.sendall(b"%x\r\n" % len(p) + p + b"\r\n")
            if pause:
                time.sleep(pause)
        if abort:
            return None
        s.sendall(b"0\r\n\r\n")
        reply = s.makefile("rb").readline().split()
        # No status line: the connection was closed without an answer.
        return int(reply[1]) if len(reply) > 1 else None
    finally:
        s.close()


def test_an_encoder_killed_mid_fragment_loses_nothing_complete(live):
    init, fragments = cmaf_stream(live)
    path = "/live/k.isml/Streams(video.cmfv)"
    half = fragments[3][: len(fragments[3]) // 2]
    chunked_post(live, path, [init, *fragments[:3], half], abort=True)
    mpd = wait_for(lambda: (r := live.get("/live/k.isml/.mpd")).status_code == 200 and r.text,
                   what="the archive")
    wait_for(lambda: len(timeline(live.get("/live/k.isml/.mpd").text)) == 3, what="3 fragments")
    assert len(timeline(mpd)) <= 3
    time.sleep(0.5)
    # Only the three complete fragments: the half one was never written.
    assert len(timeline(live.get("/live/k.isml/.mpd").text)) == 3
    # The encoder reconnects, sends its init again and goes on from the broken fragment.
    assert chunked_post(live, path, [init, *fragments[3:]]) == 200
    video = timeline(live.get("/live/k.isml/.mpd").text)
    assert len(video) == len(fragments)
    assert all(t1 == t0 + d0 for (t0, d0), (t1, _) in zip(video, video[1:]))


def slow_live(make_nginx, sync_ms):
    """A one-worker origin whose archive storage takes `sync_ms` for every sync, and the file
    that traces its syncs."""
    from harness import slow_storage
    n = make_nginx(workers=1)
    trace = n.prefix / "syncs"
    trace.touch(mode=0o666)
    trace.chmod(0o666)
    n.wrapper = slow_storage(sync_ms, trace)
    live_dir(n)
    n.start(LIVE_LOCATION)
    return n, trace


def syncing(trace, name, after=0):
    """Whether a sync of a file called `name` began (past the first `after` lines of the
    trace) and has not ended yet."""
    lines = trace.read_text().splitlines()[after:] if trace.exists() else []
    open_syncs = set()
    for line in lines:
        what, _, path = line.partition(" ")
        if os.path.basename(path) != name:
            continue
        if what == "begin":
            open_syncs.add(path)
        else:
            open_syncs.discard(path)
    return bool(open_syncs)


def test_the_worker_serves_others_while_ingest_syncs(make_nginx):
    """Archive syncs run off the event loop: while a fragment's sync takes seconds, the same
    (only) worker answers other requests."""
    origin, trace = slow_live(make_nginx, 3000)
    init, fragments = cmaf_stream(origin)
    path = "/live/s.isml/Streams(video.cmfv)"
    assert chunked_post(origin, path, [init, fragments[0]]) == 200
    mark = len(trace.read_text().splitlines())
    post = threading.Thread(target=chunked_post, args=(origin, path, [fragments[1]]))
    post.start()
    wait_for(lambda: syncing(trace, "00000001.frag", mark), what="the fragment's sync")
    # Answered while the sync still runs (the sync ends 3 s after it began).
    assert origin.get("/live/s.isml/state").status_code == 200
    assert syncing(trace, "00000001.frag", mark)
    post.join(timeout=60)
    assert len(timeline(origin.get("/live/s.isml/.mpd").text)) == 2


def test_ingest_runs_on_the_thread_pool_the_configuration_names(make_nginx):
    n = make_nginx(workers=1)
    live_dir(n)
    server = LIVE_LOCATION
    # A pool nginx does not know fails the configuration test.
    bad = n.test_config(n.config(server, http_extra="origin_thread_pool archive;"))
    assert bad.returncode != 0 and 'unknown thread pool "archive"' in bad.stderr
    n.start(server, http_extra="origin_thread_pool archive;",
            main_extra="thread_pool archive threads=2;")
    init, fragments = cmaf_stream(n)
    url = n.url("/live/p.isml/Streams(video.cmfv)")
    assert requests.post(url, data=init).status_code == 200
    assert requests.post(url, data=fragments[0]).status_code == 200
    assert len(timeline(n.get("/live/p.isml/.mpd").text)) == 1
    # Two pool threads beside the event loop (nginx's default pool would have 32).
    worker = n.worker_pids()[0]
    assert len(os.listdir(f"/proc/{worker}/task")) == 3


def test_a_worker_killed_while_a_record_is_synced_loses_nothing_acknowledged(make_nginx):
    origin, trace = slow_live(make_nginx, 1500)
    init, fragments = cmaf_stream(origin)
    url = origin.url("/live/w.isml/Streams(video.cmfv)")
    assert requests.post(url, data=init).status_code == 200
    assert requests.post(url, data=fragments[0]).status_code == 200
    acknowledged = timeline(origin.get("/live/w.isml/.mpd").text)
    assert len(acknowledged) == 1
    # The next fragment: the worker dies while its record is being synced.
    mark = len(trace.read_text().splitlines())
    result = {}

    def send_second():
        try:
            result["status"] = chunked_post(origin, "/live/w.isml/Streams(video.cmfv)",
                                            [fragments[1]])
        except OSError as e:  # the worker died under the request: no answer
            result["error"] = e

    post = threading.Thread(target=send_second)
    worker = origin.worker_pids()
    post.start()
    wait_for(lambda: syncing(trace, "records", mark), what="the record's sync")
    os.kill(worker[0], signal.SIGKILL)
    post.join(timeout=60)
    # Not acknowledged: the encoder got no answer.
    assert result.get("status") is None
    # A new worker serves what was acknowledged, whole; the unacknowledged fragment is there
    # complete or not at all.
    wait_for(lambda: origin.worker_pids() and origin.worker_pids() != worker, what="a new worker")
    after = timeline(origin.get("/live/w.isml/.mpd").text)
    assert after[:1] == acknowledged and len(after) <= 2
    # The encoder sends the fragment again (it got no answer), then the rest, the last one
    # branded as the end of the stream.
    lmsg = (24).to_bytes(4, "big") + b"stypmsdh\0\0\0\0msdhlmsg"
    for f in fragments[1:-1]:
        assert requests.post(url, data=f).status_code == 200
    assert requests.post(url, data=lmsg + fragments[-1]).status_code == 200
    video = timeline(origin.get("/live/w.isml/.mpd").text)
    assert len(video) == len(fragments)
    assert all(t1 == t0 + d0 for (t0, d0), (t1, _) in zip(video, video[1:]))
    sent = origin.prefix / "sent.cmfv"
    sent.write_bytes(init + b"".join(fragments))
    assert packets(origin.url("/live/w.isml/.mpd"), "0:v") == packets(str(sent), "0:v")


def test_a_dripping_encoder_neither_times_out_nor_slows_others(live):
    init, fragments = cmaf_stream(live)
    body = init + fragments[0]
    drip = [body[i:i + 1] for i in range(len(init))] + [fragments[0]]
    result = {}
    t = threading.Thread(target=lambda: result.update(
        status=chunked_post(live, "/live/d.isml/Streams(v)", drip, pause=0.001)))
    t.start()
    # Meanwhile the worker answers everyone else.
    served = 0
    while t.is_alive():
        assert live.get("/live/d.isml/state").status_code in (200, 404)
        served += 1
        time.sleep(0.05)
    t.join()
    assert result["status"] == 200 and served > 10
    assert len(timeline(live.get("/live/d.isml/.mpd").text)) == 1


def test_garbage_leaves_no_trace(live):
    init, fragments = cmaf_stream(live)
    for body in (b"\x00\x00\x00\x10junkjunkjunk", init[:100], fragments[0],
                 b"\x00\x00\x00\x08mdat"):
        status = requests.post(live.url("/live/g.isml/Streams(v)"), data=body).status_code
        assert status in (400, 412), (body[:16], status)
    assert not (live.root / "live" / "g.isml").exists()
    assert not (live.root / "live" / "g.isml.archive").exists()
    assert live.get("/live/g.isml/.mpd").status_code == 404


@pytest.fixture
def small_disk(make_nginx):
    """An origin whose live directory is a 3 MiB tmpfs."""
    n = make_nginx(workers=2)
    d = n.root / "live"
    d.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0777", "tmpfs", str(d)],
                             capture_output=True, text=True)
    assert mounted.returncode == 0, f"mounting a small tmpfs needs root: {mounted.stderr}"
    n.start(LIVE_LOCATION)
    yield n, d
    n.stop()
    subprocess.run(["umount", "-l", str(d)], check=False)


def test_a_full_disk_fails_ingest_not_egress(small_disk):
    live, d = small_disk
    init, fragments = cmaf_stream(live, loops=8)
    path = "/live/f.isml/Streams(video.cmfv)"
    assert chunked_post(live, path, [init, *fragments[:2]]) == 200
    # Fill the disk.
    filler = d / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError:
        pass
    finally:
        os.close(fd)
    status = chunked_post(live, path, fragments[2:6])
    assert status is not None and status >= 500
    assert any("No space left" in line for line in live.log_lines("f.isml"))
    # What was ingested is still served.
    mpd = live.get("/live/f.isml/.mpd")
    assert mpd.status_code == 200
    video = timeline(mpd.text)
    assert len(video) >= 2
    rep = re.search(r'Representation id="([^"]*)"', mpd.text).group(1)
    assert live.get(f"/live/f.isml/dash/f-{rep}-{video[0][0]}.dash").status_code == 200
    # Space returns: ingest goes on.
    filler.unlink()
    assert chunked_post(live, path, [init, *fragments[len(video):8]]) == 200
    assert len(timeline(live.get("/live/f.isml/.mpd").text)) == 8


def test_reload_and_restart_during_ingest(live):
    push = push_smooth(live, "r")
    try:
        wait_for(lambda: len(timeline(live.get("/live/r.isml/.mpd").text or "<x/>")) >= 1
                 if live.get("/live/r.isml/.mpd").status_code == 200 else False,
                 what="the first fragment")
        before = live.worker_pids()
        os.kill(live.master_pid(), signal.SIGHUP)
        wait_for(lambda: set(live.worker_pids()) - set(before), what="new workers")
        # New workers serve the channel as it grows; the old one finishes the POST.
        seen = len(timeline(live.get("/live/r.isml/.mpd").text))
        wait_for(lambda: len(timeline(live.get("/live/r.isml/.mpd").text)) > seen + 1,
                 what="the manifest to advance after the reload")
        finish(push, origin=live, channel="r")
    finally:
        push.kill()
    sent = str(sent_copy(live, "r", "s1.ismv"))
    assert packets(live.url("/live/r.isml/.mpd"), "0:v") == packets(sent, "0:v")

    # A restart in the middle of a push: what was acknowledged is there afterwards, and the
    # encoder's next push goes on from it.
    push = push_smooth(live, "r2", loops=5, copy="first.ismv")
    try:
        wait_for(lambda: live.get("/live/r2.isml/.mpd").status_code == 200
                 and len(timeline(live.get("/live/r2.isml/.mpd").text)) >= 3,
                 what="three fragments")
        text = (live.prefix / "conf" / "nginx.conf").read_text()
        live.proc.send_signal(signal.SIGTERM)
        live.proc.wait(timeout=10)
        live.proc = None
        before = timeline_of_archive(live, "r2")
        push.wait(timeout=30)
        live.start_config(text)
    finally:
        push.kill()
    after = timeline(live.get("/live/r2.isml/.mpd").text)
    assert after[:len(before)] == before and len(after) >= len(before)
    finish(push_smooth(live, "r2", loops=5, copy="second.ismv"), origin=live, channel="r2")
    final = timeline(live.get("/live/r2.isml/.mpd").text)
    assert len(final) == 2 * 6 and final[:len(before)] == before
    assert all(t1 == t0 + d0 for (t0, d0), (t1, _) in zip(final, final[1:]))


def timeline_of_archive(origin, channel):
    """The video timeline the archive on disk holds (read while nginx is down)."""
    from struct import unpack_from
    archive = origin.root / "live" / f"{channel}.isml.archive"
    video = next(p for p in archive.iterdir() if p.name.startswith("video"))
    data = (video / "records").read_bytes()
    out = []
    for at in range(0, len(data) - len(data) % 64, 64):
        start, duration = unpack_from("<QQ", data, at)
        flags = unpack_from("<I", data, at + 48)[0]
        if not flags & 1:
            out.append((start, duration))
    return out


def test_four_workers_hammering_agree(make_nginx):
    n = make_nginx(workers=4)
    live_dir(n)
    n.start(LIVE_LOCATION)
    push = push_smooth(n, "h")
    problems = []

    def client():
        last_seq, last_published = -1, ""
        session = requests.Session()
        while push.poll() is None:
            mpd = session.get(n.url("/live/h.isml/.mpd"))
            if mpd.status_code != 200:
                time.sleep(0.1)
                continue
            published = ET.fromstring(mpd.content).get("publishTime") or "~"
            if published < last_published:
                problems.append(("publishTime went back", last_published, published))
            last_published = published
            playlist = variant_playlist(n, "h")
            text = session.get(n.url(playlist)).text
            m = re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text)
            seq = int(m.group(1)) if m else -1
            if seq < last_seq:
                problems.append(("media sequence went back", last_seq, seq))
            last_seq = seq
            base = playlist.rsplit("/", 1)[0]
            for uri in [ln for ln in text.splitlines() if ln and ln[0] != "#"]:
                status = session.get(n.url(f"{base}/{uri}")).status_code
                if status != 200:
                    problems.append((uri, status))

    try:
        wait_for(lambda: n.get("/live/h.isml/.mpd").status_code == 200, what="the channel")
        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        finish(push)
        for t in threads:
            t.join()
    finally:
        push.kill()
    assert not problems, problems[:5]
    assert len({p for p in n.worker_pids()}) == 4


def test_the_api_example_creates_reports_and_deletes_channels(make_nginx):
    n, channels = example_origin(make_nginx, "live-api.conf")
    body = ('<smil xmlns="http://www.w3.org/2001/SMIL20/Language"><head>'
            '<meta name="dvr_window_length" content="20"/>'
            '<meta name="archiving" content="true"/></head><body/></smil>')
    assert requests.put(n.url("/api/channels/api.isml"), data=body).status_code == 201
    assert requests.put(n.url("/api/channels/api.isml"), data=body).status_code == 200
    assert requests.put(n.url("/api/channels/bad.isml"), data="<smil").status_code == 400
    assert 'content="20"' in (channels / "api.isml").read_text()
    assert state(n, "api") is None  # the API location is /api/channels/
    r = n.get("/api/channels/api.isml/state")
    assert r.status_code == 200 and 'content="idle"' in r.text
    # Encoders push to the playout location; its manifests follow the channel's options.
    finish(push_file(n.url("/channels/api.isml/Streams(s1)")))
    wait_for(lambda: 'content="stopped"' in n.get("/api/channels/api.isml/state").text,
             what="the end of the stream")
    assert n.get("/api/channels/api.isml/statistics").status_code == 200
    assert n.get("/channels/api.isml/.mpd").status_code == 200
    # PUT and DELETE from the playout location are refused to all but the management network
    # (the test client is on it): here they are allowed; DELETE removes the channel.
    assert requests.delete(n.url("/api/channels/api.isml")).status_code == 204
    assert not (channels / "api.isml").exists()
    assert not (channels / "api.isml.archive").exists()
    assert n.get("/channels/api.isml/.mpd").status_code == 404
    assert requests.delete(n.url("/api/channels/api.isml")).status_code == 404


def test_without_usp_handle_api_put_and_delete_are_refused(live):
    assert requests.put(live.url("/live/x.isml"), data="<smil/>").status_code == 405
    assert requests.delete(live.url("/live/x.isml")).status_code == 405


def test_the_ingest_example_as_written(make_nginx):
    n, channels = example_origin(make_nginx, "live-ingest.conf")
    # The example makes no channel on a push: the operator makes it beforehand.
    subprocess.run([str(ISMTOOL), "create", "-o", str(channels / "news.isml")], check=True,
                   capture_output=True)
    (channels / "news.isml").chmod(0o666)
    finish(push_file(n.url("/channels/news.isml/Streams(s1)")))
    wait_for(lambda: 'content="stopped"' in n.get("/channels/news.isml/state").text,
             what="the end of the stream")
    assert (channels / "news.isml.archive").is_dir()
    for manifest in (".mpd", ".m3u8", "Manifest"):
        assert n.get(f"/channels/news.isml/{manifest}").status_code == 200


def test_archive_parts_by_wall_clock_and_time_shift(live):
    finish(push_smooth(live, "a", loops=LOOPS), origin=live, channel="a")
    whole = timeline(live.get("/live/a.isml/.mpd").text)
    assert len(whole) == 2 * (LOOPS + 1)
    archive = ET.fromstring(live.get("/live/a.isml/archive").content)
    start = next(archive.iter(f"{SMIL}c")).get("start")
    # vbegin / vend as UTC times: 4 s to 10 s after the channel's start.
    from datetime import datetime, timedelta
    t0 = datetime.fromisoformat(start.replace("Z", "+00:00"))
    iso = lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"  # noqa: E731
    query = f"?vbegin={iso(t0 + timedelta(seconds=4))}&vend={iso(t0 + timedelta(seconds=10))}"
    part = live.get(f"/live/a.isml/.mpd{query}")
    assert part.status_code == 200, part.text
    assert ET.fromstring(part.content).get("type") == "static"
    assert timeline(part.text) == whole[2:5]
    playlist = live.get(variant_playlist(live, "a") + query).text
    assert playlist.count("#EXTINF") == 3 and "#EXT-X-ENDLIST" in playlist
    # time_shift: the presentation ends that long before the edge.
    shifted = timeline(live.get("/live/a.isml/.mpd?time_shift=4").text)
    assert shifted == whole[:-2]


def test_a_short_dvr_window_still_lists_three_segments(make_nginx):
    n = make_nginx(workers=2)
    live_dir(n, s=3)
    n.start("""
        location /live/ {
            usp_handle_ism;
            usp_dynamic_time_shift_buffer_depth on;
            client_max_body_size 0;
        }""")
    push = push_smooth(n, "s", loops=3)
    counts, depths = [], []
    try:
        while push.poll() is None:
            mpd = n.get("/live/s.isml/.mpd")
            if mpd.status_code == 200 and ET.fromstring(mpd.content).get("type") == "dynamic":
                depths.append(ET.fromstring(mpd.content).get("timeShiftBufferDepth"))
                text = n.get(variant_playlist(n, "s")).text
                if "#EXT-X-ENDLIST" not in text:
                    counts.append(text.count("#EXTINF"))
            time.sleep(0.5)
        finish(push)
    finally:
        push.kill()
    # Three segments once the channel has them; a fourth only in the instant one track's
    # fragment has arrived and the other's not yet (every track keeps at least three, so the
    # leading one shows one more). A window that did not slide would list them all.
    assert counts and 3 in counts and max(counts) <= 4 and min(counts) >= 1
    # The depth follows what the window holds, never past the channel's 3 s.
    assert depths and all(d in ("PT0.000S", "PT1.000S", "PT2.000S", "PT3.000S") for d in depths)
    assert "PT3.000S" in depths


def test_a_segment_branded_lmsg_ends_the_stream(live):
    init, fragments = cmaf_pieces()
    url = live.url("/live/l.isml/Streams(video.cmfv)")
    styp = lambda brands: (8 + 4 * len(brands) + 4).to_bytes(4, "big") + b"styp" + \
        brands[0] + b"\0\0\0\0" + b"".join(brands[1:])  # noqa: E731
    assert requests.post(url, data=init).status_code == 200
    assert requests.post(url, data=styp([b"msdh", b"msdh"]) + fragments[0]).status_code == 200
    assert state(live, "l") == "started"
    assert requests.post(url, data=styp([b"msdh", b"msdh", b"lmsg"]) + fragments[1]
                         ).status_code == 200
    assert state(live, "l") == "stopped"
    assert ET.fromstring(live.get("/live/l.isml/.mpd").content).get("type") == "static"


def test_without_auto_creation_only_channels_made_beforehand_take_ingest(make_nginx):
    n = make_nginx()
    d = n.root / "live"
    d.mkdir()
    d.chmod(0o777)
    subprocess.run([str(ISMTOOL), "create", "-o", str(d / "known.isml"),
                    "--dvr_window_length=30"], check=True, capture_output=True)
    (d / "known.isml").chmod(0o666)
    n.start("""
        location /live/ {
            usp_handle_ism;
            origin_live_auto_create off;
            client_max_body_size 0;
        }""")
    init, fragments = cmaf_pieces()
    unknown = requests.post(n.url("/live/unknown.isml/Streams(v)"), data=init + fragments[0])
    assert unknown.status_code == 404
    assert not (d / "unknown.isml").exists() and not (d / "unknown.isml.archive").exists()
    known = requests.post(n.url("/live/known.isml/Streams(v)"), data=init + fragments[0])
    assert known.status_code == 200
    assert state(n, "known") == "started"


def test_the_archive_is_pruned_to_what_the_channel_keeps(live):
    d = live.root / "live"
    subprocess.run([str(ISMTOOL), "create", "-o", str(d / "p.isml"), "--dvr_window_length=4",
                    "--archive_segment_length=2"], check=True, capture_output=True)
    (d / "p.isml").chmod(0o666)
    init, fragments = cmaf_stream(live, loops=3)
    path = "/live/p.isml/Streams(video.cmfv)"
    assert chunked_post(live, path, [init, fragments[0]]) == 200
    mpd = live.get("/live/p.isml/.mpd").text
    first_t = timeline(mpd)[0][0]
    rep = re.search(r'Representation id="([^"]*)"', mpd).group(1)
    assert chunked_post(live, path, fragments[1:]) == 200
    # A 4-second window (and room for three segments) kept in 2-second data files: the
    # oldest files are gone.
    video_dir = next(p for p in (d / "p.isml.archive").iterdir() if p.name.startswith("video"))
    kept = sorted(p.name for p in video_dir.glob("*.frag"))
    assert "00000001.frag" not in kept and len(kept) <= 6, kept
    window = timeline(live.get("/live/p.isml/.mpd").text)
    assert len(window) == 3 and window[0][0] > first_t
    # The expired fragment: gone (DASH 410, Smooth 404), the kept ones served.
    assert live.get(f"/live/p.isml/dash/p-{rep}-{first_t}.dash").status_code == 410
    name, bitrate = rep.split("=")
    assert live.get(f"/live/p.isml/QualityLevels({bitrate})/Fragments({name}={first_t})"
                    ).status_code == 404
    assert live.get(f"/live/p.isml/dash/p-{rep}-{window[0][0]}.dash").status_code == 200
