"""Live ingest timeline rules (docs/COMPAT.md §5, "Timestamps"): encoder faults — a bogus
future timestamp, a restart with or without an end of stream, a re-send with moved times, a
new init under a held stream name — are refused or start a new timeline, and what was
answered 2xx is served afterwards, frame for frame.

The origin tells an encoder restart from a redundant copy by how long ago it wrote the media
the fragment goes back over (more than 10 s: a restart). Tests that restart an encoder let
their media age that long; everything else is pushed as fast as it goes."""

import subprocess
import time
import xml.etree.ElementTree as ET

import pytest
import requests

from helpers.live import (SOURCE, cmaf_stream, live_dir, packets, shift_fragment, split_cmaf,
                          timeline)
from helpers.media import ISMTOOL, ffmpeg_made

REDUNDANT_SECS = 10  # core/src/live/timeline.rs
MPD = "{urn:mpeg:dash:schema:mpd:2011}"
LMSG = (20).to_bytes(4, "big") + b"stypmsdh\0\0\0\0lmsg"


@pytest.fixture
def live(make_nginx):
    n = make_nginx(workers=2)
    live_dir(n)
    n.start("""
        location /live/ {
            usp_handle_ism;
            client_max_body_size 0;
        }""")
    return n


def channel(origin, name, *options):
    """A channel made beforehand, archiving everything (so nothing is pruned by the window)."""
    isml = origin.root / "live" / f"{name}.isml"
    subprocess.run([str(ISMTOOL), "create", "-o", str(isml), "--archiving=1", *options],
                   check=True, capture_output=True)
    isml.chmod(0o666)


def post(origin, name, body, stream="video.cmfv"):
    return requests.post(origin.url(f"/live/{name}.isml/Streams({stream})"), data=body,
                         timeout=60)


def box(fragment, kind):
    at = fragment.find(kind)
    assert at >= 4, kind
    return at - 4


def decode_time(fragment):
    at = box(fragment, b"tfdt")
    wide = 8 if fragment[at + 8] == 1 else 4
    return int.from_bytes(fragment[at + 12:at + 12 + wide], "big")


def timescale(init):
    at = box(init, b"mdhd")
    version = init[at + 8]
    at += 12 + (16 if version == 1 else 8)
    return int.from_bytes(init[at:at + 4], "big")


def local_copy(origin, name, init, fragments):
    """What the archive must serve, as a file of its own: the init and the fragments taken."""
    path = origin.prefix / f"{name}-expected.mp4"
    path.write_bytes(init + b"".join(fragments))
    return str(path)


def end(origin, name, init, fragment):
    """The stream's last segment, branded `lmsg`: the channel plays as its archive."""
    assert post(origin, name, init + LMSG + fragment).status_code == 200


def periods(mpd_text, content="video"):
    """The segments (t, d) of `content`'s first adaptation set in each period, by period ID,
    and each period's start."""
    out = {}
    for period in ET.fromstring(mpd_text).iter(f"{MPD}Period"):
        segments = []
        for s in period.iter(f"{MPD}AdaptationSet"):
            if s.get("contentType") == content:
                t = 0
                for e in s.iter(f"{MPD}S"):
                    t = int(e.get("t", t))
                    for _ in range(int(e.get("r", 0)) + 1):
                        segments.append((t, int(e.get("d"))))
                        t += int(e.get("d"))
                break
        out[period.get("id")] = (period.get("start"), segments)
    return out


def media_playlist(origin, name):
    master = origin.get(f"/live/{name}.isml/.m3u8?hls_fmp4").text
    uri = next(line for line in master.splitlines() if line and not line.startswith("#"))
    return origin.get(f"/live/{name}.isml/{uri}").text


def test_a_fragment_far_in_the_future_is_refused_and_the_window_stands(live):
    init, fragments = cmaf_stream(loops=7)
    channel(live, "future")
    for f in fragments[:10]:
        assert post(live, "future", init + f).status_code == 200
    before = timeline(live.get("/live/future.isml/.mpd").text)
    bogus = shift_fragment(fragments[10], 10**6 * timescale(init))
    refused = post(live, "future", init + bogus)
    assert refused.status_code == 422
    assert refused.headers["X-Origin-Error"] == "INGEST_TOO_FAR_AHEAD"
    assert timeline(live.get("/live/future.isml/.mpd").text) == before
    # The encoder's next fragments are stored, not taken for duplicates of the bogus one.
    for f in fragments[10:14]:
        assert post(live, "future", init + f).status_code == 200
    end(live, "future", init, fragments[14])
    served = timeline(live.get("/live/future.isml/.mpd").text)
    assert len(served) == 15
    assert all(a[0] + a[1] == b[0] for a, b in zip(served, served[1:]))
    assert packets(live.url("/live/future.isml/.mpd"), "0:v") == \
        packets(local_copy(live, "future", init, fragments[:15]), "0:v")
    assert any("[warn]" in line for line in live.log_lines("past the live edge"))


def test_a_resent_fragment_with_moved_times_is_refused_and_copies_are_dropped(live):
    init, fragments = cmaf_stream(loops=7)
    channel(live, "moved")
    for f in fragments[:5]:
        assert post(live, "moved", init + f).status_code == 200
    half = (decode_time(fragments[1]) - decode_time(fragments[0])) // 2
    moved = post(live, "moved", init + shift_fragment(fragments[4], -half))
    assert moved.status_code == 409
    assert moved.headers["X-Origin-Error"] == "INGEST_CONFLICT"
    moved = post(live, "moved", init + shift_fragment(fragments[3], half))
    assert moved.status_code == 409
    # A copy of a held fragment (a redundant encoder) is 200 and changes nothing.
    assert post(live, "moved", init + fragments[4]).status_code == 200
    for f in fragments[5:7]:
        assert post(live, "moved", init + f).status_code == 200
    end(live, "moved", init, fragments[7])
    served = timeline(live.get("/live/moved.isml/.mpd").text)
    assert len(served) == 8
    assert all(a[0] + a[1] == b[0] for a, b in zip(served, served[1:]))
    assert packets(live.url("/live/moved.isml/.mpd"), "0:v") == \
        packets(local_copy(live, "moved", init, fragments[:8]), "0:v")


def test_an_encoder_that_restarts_its_clock(live):
    """Crashed (no end of stream) or stopped: going back over media written long ago is a
    restart. With `restart_on_encoder_reconnect` it is a new timeline after what is held
    (HLS marks it with EXT-X-DISCONTINUITY); without, 409 and the archive stays as it was."""
    init, fragments = cmaf_stream(loops=7)
    cases = {"crashed": False, "stopped": True, "refused": False}
    channel(live, "crashed", "--restart_on_encoder_reconnect=true")
    channel(live, "stopped", "--restart_on_encoder_reconnect=true")
    channel(live, "refused")
    for name, stops in cases.items():
        for f in fragments[:4]:
            assert post(live, name, init + f).status_code == 200
        if stops:
            end(live, name, init, fragments[4])
    held = {name: timeline(live.get(f"/live/{name}.isml/.mpd").text) for name in cases}
    # The media ages past what a redundant encoder's copy could be.
    time.sleep(REDUNDANT_SECS + 1)
    refused = post(live, "refused", init + fragments[0])
    assert refused.status_code == 409
    assert "restart_on_encoder_reconnect" in live.log_text()
    assert timeline(live.get("/live/refused.isml/.mpd").text) == held["refused"]
    for name in ("crashed", "stopped"):
        for f in fragments[:3]:
            assert post(live, name, init + f).status_code == 200
        end(live, name, init, fragments[3])
        # DASH: a period per timeline, the second starting where the restarted media does.
        by_period = periods(live.get(f"/live/{name}.isml/.mpd").text)
        assert list(by_period) == ["1", "2"]
        assert by_period["1"][0] == "PT0S" and by_period["2"][0] != "PT0S"
        old = held[name]
        assert by_period["1"][1] == old
        restarted = by_period["2"][1]
        served = old + restarted
        assert len(restarted) == 4
        # After what was held, on the channel's clock (the media aged at least 11 s).
        assert restarted[0][0] >= old[-1][0] + old[-1][1]
        assert all(a[0] + a[1] == b[0] for a, b in zip(restarted, restarted[1:]))
        playlist = media_playlist(live, name)
        assert playlist.count("#EXT-X-DISCONTINUITY\n") == 1
        segments = [line for line in playlist.splitlines() if line.startswith("#EXTINF")]
        assert len(segments) == len(served)
        before_break = playlist.split("#EXT-X-DISCONTINUITY\n")[0]
        assert before_break.count("#EXTINF") == len(old)
        # Smooth: the chunk after the break says where it starts.
        smooth = ET.fromstring(live.get(f"/live/{name}.isml/Manifest").content)
        video = next(s for s in smooth.iter("StreamIndex") if s.get("Type") == "video")
        chunks = list(video.iter("c"))
        assert sum(int(c.get("r", 1)) for c in chunks) == len(served)
        assert sum(1 for c in chunks if c.get("t") is not None) == 2
        # Every frame, through the break (HLS: ffmpeg reads one DASH period only).
        taken = fragments[:len(old)] + fragments[:4]
        assert packets(live.url(f"/live/{name}.isml/.m3u8?hls_fmp4"), "0:v") == \
            packets(local_copy(live, name, init, taken), "0:v")


def test_a_new_init_under_a_held_stream_name_is_refused(live):
    init, fragments = cmaf_stream(loops=3)
    other = ffmpeg_made("cmaf-small.cmfv", [
        "-stream_loop", "1", "-i", str(SOURCE), "-map", "0:v", "-vf", "scale=256:144",
        "-c:v", "libx264", "-g", "48", "-keyint_min", "48", "-sc_threshold", "0",
        "-movflags", "empty_moov+separate_moof+default_base_moof+cmaf+frag_keyframe",
        "-f", "mp4"], [SOURCE])
    small_init, small_fragments = split_cmaf(other.read_bytes())
    channel(live, "init")
    for f in fragments[:3]:
        assert post(live, "init", init + f).status_code == 200
    held = timeline(live.get("/live/init.isml/.mpd").text)
    # Another picture size under the same stream name: 409, with the reason, nothing stored.
    refused = post(live, "init", small_init + small_fragments[0])
    assert refused.status_code == 409
    assert "sample entry" in live.log_text()
    assert timeline(live.get("/live/init.isml/.mpd").text) == held
    # Under a stream name of its own it is a track of its own.
    assert post(live, "init", small_init + small_fragments[0], stream="small.cmfv"
                ).status_code == 200
    mpd = ET.fromstring(live.get("/live/init.isml/.mpd").content)
    heights = sorted(int(r.get("height")) for r in
                     mpd.iter("{urn:mpeg:dash:schema:mpd:2011}Representation"))
    assert heights[0] == 144 and heights[-1] > 144
    # Both end; the held track still decodes, every frame of it.
    end(live, "init", init, fragments[3])
    assert post(live, "init", small_init + LMSG + small_fragments[1], stream="small.cmfv"
                ).status_code == 200
    assert packets(live.url("/live/init.isml/.mpd"), "0:v:1") == \
        packets(local_copy(live, "init", init, fragments[:4]), "0:v")
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", live.url("/live/init.isml/.mpd"),
                          "-map", "0:v:0", "-f", "null", "-"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "error" not in out.stderr.lower(), out.stderr
