"""Ad cues (SCTE-35 timed metadata) from a title's cue track or an encoder's push to HLS and
DASH. Cues are made and decoded with threefive (an independent SCTE-35 library); the event
message tracks that carry them are written by tests/helpers/events.py, not by the origin's
code. What comes out must decode back to the same sections at the same times (±1 ms)."""

from __future__ import annotations

import base64
import datetime
import json
import re
import struct
import subprocess
import threading
import time
import xml.etree.ElementTree as ET

import pytest
import requests

from harness import wait_for
from helpers.events import (SCTE35_BIN, box, decoded, emib, emsg_v1, event_fragment, event_track,
                            event_track_init, sparse_fragment, splice_insert, time_signal,
                            urim_entry)
from helpers.live import SOURCE, cmaf_pieces, live_dir, split_cmaf, timeline
from helpers.media import FIXTURES, ISMTOOL, MPD_NS, boxes, ffmpeg_made, media_dir

OUT = splice_insert(42, True, 1.0, 2.0)
IN = splice_insert(42, False, 3.0)
PLACEMENT = time_signal(3.5, 0x34, 1234, "ADID0000001", 0.5)  # placement opportunity start


def attributes(line: str) -> dict[str, str]:
    """The attribute list of an HLS tag (RFC 8216 §4.2)."""
    body = line.split(":", 1)[1]
    return {k: v.strip('"') for k, v in
            re.findall(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)', body)}


def date_ranges(playlist: str) -> list[dict[str, str]]:
    return [attributes(line) for line in playlist.splitlines()
            if line.startswith("#EXT-X-DATERANGE:")]


def seconds_of(date: str) -> float:
    t = datetime.datetime.fromisoformat(date.replace("Z", "+00:00"))
    return t.timestamp()


def section_of(attrs: dict[str, str], role: str) -> bytes:
    return bytes.fromhex(attrs[f"SCTE35-{role}"][2:])


def mpd_events(mpd_text: str) -> list[tuple[float, bytes, ET.Element]]:
    """Every SCTE-35 event of the MPD: (presentation time in seconds, section, element)."""
    mpd = ET.fromstring(mpd_text)
    out = []
    for stream in mpd.iterfind(".//d:EventStream", MPD_NS):
        assert stream.get("schemeIdUri") == "urn:scte:scte35:2014:xml+bin"
        scale = int(stream.get("timescale"))
        offset = int(stream.get("presentationTimeOffset", "0"))
        for e in stream.iterfind("d:Event", MPD_NS):
            binary = e.find("{http://www.scte.org/schemas/35/2016}Signal/"
                            "{http://www.scte.org/schemas/35/2016}Binary")
            out.append(((int(e.get("presentationTime")) - offset) / scale,
                        base64.b64decode(binary.text), e))
    return out


def smooth_cues(n, manifest_path: str) -> list[tuple[float, bytes]]:
    """The cue stream of a Smooth client manifest: (time in seconds, section) of each chunk,
    checked against the fragment the chunk names (its `tfxd` time and its `mdat`)."""
    r = n.get(f"{manifest_path}/Manifest")
    assert r.status_code == 200, r.text
    index = ET.fromstring(r.content).find("StreamIndex[@Name='scte35']")
    assert index is not None, r.text
    assert (index.get("Type"), index.get("Subtype"), index.get("ManifestOutput")) == (
        "text", "DATA", "TRUE")
    scale = int(index.get("TimeScale"))
    bitrate = index.find("QualityLevel").get("Bitrate")
    out = []
    for c in index.iterfind("c"):
        t = int(c.get("t"))
        section = base64.b64decode(c.find("f").text)
        url = index.get("Url").replace("{bitrate}", bitrate).replace("{start time}", str(t))
        fragment = n.get(f"{manifest_path}/{url}")
        assert fragment.status_code == 200, (url, fragment.status_code)
        parts = dict(boxes(fragment.content))
        assert parts[b"mdat"] == section
        tfxd = bytes.fromhex("6d1d9b0542d544e680e2141daff757b2")
        at = fragment.content.index(tfxd) + 16
        assert int.from_bytes(fragment.content[at + 4:at + 12], "big") == t
        out.append((t / scale, section))
    return out


def media_playlist(n, manifest: str, query: str = "") -> str:
    master = n.get(f"/v/{manifest}/.m3u8{query}")
    assert master.status_code == 200, master.text
    uri = next(line for line in master.text.splitlines() if line and not line.startswith("#"))
    r = n.get(f"/v/{manifest}/{uri}")
    assert r.status_code == 200, r.text
    return r.text


def same_cue(section: bytes, made: bytes):
    """The section is the one made, byte for byte, and threefive reads the same cue in it."""
    assert section == made
    a, b = decoded(section), decoded(made)
    assert a.command.get() == b.command.get()
    assert [d.get() for d in a.descriptors] == [d.get() for d in b.descriptors]


@pytest.fixture
def vod(make_nginx):
    n = make_nginx()
    media = media_dir(n, ["progressive.mp4"], {})
    cues = [{"time": 1.0, "scte35": base64.b64encode(OUT).decode()},
            {"time": 3.0, "scte35": "0x" + IN.hex()},
            {"time": 3.5, "scte35": base64.b64encode(PLACEMENT).decode()}]
    titles(media, "progressive.mp4", cues, 4, {
        "title.ism": [], "cueout.ism": ["--hls.ad_markers=both"],
        "off.ism": ["--timed_metadata=false"], "inband.ism": ["--mpd.events=inband"]})
    n.start(r"location ~ \.(ism|isml|mp4)(/|$) { usp_handle_ism; }")
    return n


def titles(media, source: str, cues: list, duration: int, manifests: dict[str, list[str]]):
    """A cue track made of `cues` by `ismtool cues`, and a server manifest over `source` and
    it for each of `manifests` (name: ismtool create options), all readable by the workers."""
    (media / "breaks.json").write_text(json.dumps(cues))
    subprocess.run([str(ISMTOOL), "cues", str(media / "breaks.json"), "--duration",
                    str(duration), "-o", str(media / "breaks.mp4")],
                   check=True, capture_output=True)
    for name, options in manifests.items():
        subprocess.run([str(ISMTOOL), "create", "-o", str(media / name), str(media / source),
                        str(media / "breaks.mp4"), *options], check=True, capture_output=True)
    for p in media.iterdir():
        p.chmod(0o644)


@pytest.mark.parametrize("query", ["", "?hls_fmp4"])
def test_a_titles_cue_track_gives_hls_date_ranges(vod, query):
    playlist = media_playlist(vod, "title.ism", query)
    ranges = date_ranges(playlist)
    assert len(ranges) == 3, playlist
    out, back, placement = ranges
    # The break: out at 1 s planned for 2 s, and its return at 3 s closing the same range.
    assert out["ID"] == back["ID"]
    assert out["START-DATE"] == back["START-DATE"]
    assert abs(seconds_of(out["START-DATE"]) - 1.0) < 0.001
    assert float(out["PLANNED-DURATION"]) == pytest.approx(2.0, abs=0.001)
    assert float(back["DURATION"]) == pytest.approx(2.0, abs=0.001)
    same_cue(section_of(out, "OUT"), OUT)
    same_cue(section_of(back, "IN"), IN)
    # A time_signal starting a placement opportunity: its descriptor kept byte for byte.
    assert abs(seconds_of(placement["START-DATE"]) - 3.5) < 0.001
    same_cue(section_of(placement, "OUT"), PLACEMENT)
    assert decoded(section_of(placement, "OUT")).descriptors[0].segmentation_upid \
        == "ADID0000001"
    # Date ranges need program date-times (RFC 8216 §4.4.5.1), VOD too.
    assert "#EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:00:00.000Z" in playlist
    assert "#EXT-X-CUE-OUT" not in playlist


def test_the_cue_out_form_marks_the_breaks_segments(vod):
    playlist = media_playlist(vod, "cueout.ism")
    lines = playlist.splitlines()
    # The break starts at 1 s: the first segment starting at or after it (2 s, the second)
    # opens it.
    segments = [k for k, line in enumerate(lines) if line and not line.startswith("#")]
    cue_out = next(k for k, line in enumerate(lines) if line.startswith("#EXT-X-CUE-OUT:"))
    assert segments[0] < cue_out < segments[1], playlist
    assert lines[cue_out] == "#EXT-X-CUE-OUT:DURATION=2.000"
    assert len(date_ranges(playlist)) == 3


def test_a_titles_cue_track_gives_a_dash_event_stream(vod):
    r = vod.get("/v/title.ism/.mpd")
    assert r.status_code == 200
    events = mpd_events(r.text)
    assert [round(t, 3) for t, _, _ in events] == [1.0, 3.0, 3.5]
    for (_, section, _), made in zip(events, [OUT, IN, PLACEMENT]):
        same_cue(section, made)
    # The break's planned duration, and IDs that tell the out and in cues of event 42 apart.
    assert int(events[0][2].get("duration")) == 2 * 90_000
    assert len({e.get("id") for _, _, e in events}) == 3


def test_in_band_events_put_the_cues_in_the_dash_segments(vod):
    """`mpd_events=inband`: no event stream in the MPD; each audio and video segment carries
    the cues that start in it as `emsg` boxes (version 1, on the media timeline), announced
    by an InbandEventStream."""
    mpd_text = vod.get("/v/inband.ism/.mpd").text
    assert mpd_events(mpd_text) == []
    mpd = ET.fromstring(mpd_text)
    found = {}
    for adaptation in mpd.iterfind(".//d:AdaptationSet", MPD_NS):
        inband = adaptation.find("d:InbandEventStream", MPD_NS)
        assert inband is not None and inband.get("schemeIdUri") == "urn:scte:scte35:2013:bin"
        template = adaptation.find("d:SegmentTemplate", MPD_NS)
        rep = adaptation.find("d:Representation", MPD_NS).get("id")
        t = 0
        for s in template.iterfind("d:SegmentTimeline/d:S", MPD_NS):
            t = int(s.get("t", t))
            for _ in range(int(s.get("r", "0")) + 1):
                url = template.get("media").replace("$RepresentationID$", rep) \
                    .replace("$Time$", str(t))
                segment = vod.get(f"/v/inband.ism/dash/{url}")
                assert segment.status_code == 200
                kinds = [fourcc for fourcc, _ in boxes(segment.content)]
                assert kinds[0] == b"styp" and b"moof" in kinds
                for fourcc, body in boxes(segment.content):
                    if fourcc != b"emsg":
                        continue
                    assert kinds.index(b"emsg") < kinds.index(b"moof")
                    version = body[0]
                    assert version == 1
                    scale, time_, duration, event_id = struct.unpack(">IQII", body[4:24])
                    rest = body[24:]
                    scheme, rest = rest.split(b"\0", 1)
                    value, message = rest.split(b"\0", 1)
                    assert scheme == b"urn:scte:scte35:2013:bin"
                    # The segment that carries a cue is the one it starts in.
                    assert t / int(template.get("timescale")) <= time_ / scale
                    found.setdefault(adaptation.get("contentType"), []).append(
                        (round(time_ / scale, 3), message))
                t += int(s.get("d"))
    for content in ("video", "audio"):
        cues = found[content]
        assert [t for t, _ in cues] == [1.0, 3.0, 3.5], cues
        for (_, section), made in zip(cues, [OUT, IN, PLACEMENT]):
            same_cue(section, made)
    # A segment with events still decodes as it did (ffmpeg skips the emsg boxes).
    init = vod.get("/v/inband.ism/dash/inband-video=195000.dash").content
    first = vod.get("/v/inband.ism/dash/inband-video=195000-0.dash").content
    assert b"emsg" in first
    path = vod.prefix / "with-events.mp4"
    path.write_bytes(init + first)
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v",
                          "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0",
                          str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and int(out.stdout.strip()) == 50, out


def test_a_titles_cue_track_gives_a_smooth_sparse_stream(vod):
    cues = smooth_cues(vod, "/v/title.ism")
    assert [round(t, 3) for t, _ in cues] == [1.0, 3.0, 3.5]
    for (_, section), made in zip(cues, [OUT, IN, PLACEMENT]):
        same_cue(section, made)
    assert vod.get("/v/title.ism/QualityLevels(1000)/Fragments(scte35=123)").status_code == 404


def test_a_subclip_keeps_the_cues_inside_it_on_its_timeline(vod):
    # vbegin=2 cuts at the key frame at 2 s: the out cue at 1 s is before it.
    playlist = media_playlist(vod, "title.ism", "?vbegin=2")
    ranges = date_ranges(playlist)
    assert [round(seconds_of(r["START-DATE"]), 3) for r in ranges] == [1.0, 1.5]
    same_cue(section_of(ranges[0], "IN"), IN)
    mpd = vod.get("/v/title.ism/.mpd?vbegin=2").text
    assert [round(t, 3) for t, _, _ in mpd_events(mpd)] == [1.0, 1.5]
    # And none past vend.
    mpd = vod.get("/v/title.ism/.mpd?vend=2").text
    assert [round(t, 3) for t, _, _ in mpd_events(mpd)] == [1.0]


def test_timed_metadata_off_leaves_the_manifests_without_cues(vod):
    assert not date_ranges(media_playlist(vod, "off.ism"))
    assert mpd_events(vod.get("/v/off.ism/.mpd").text) == []
    assert "PROGRAM-DATE-TIME" not in media_playlist(vod, "off.ism")


def test_emsg_boxes_in_a_cmaf_file_are_cues(make_nginx):
    """A CMAF video file with an `emsg` before one of its fragments (as a packager that
    carries in-band events writes it)."""
    n = make_nginx()
    media = n.root / "v"
    media.mkdir(mode=0o755)
    data = (FIXTURES / "cmaf-video.cmfv").read_bytes()
    moofs, at = [], 0
    for fourcc, body in boxes(data):
        if fourcc == b"moof":
            moofs.append(at)
        at += 8 + len(body)
    assert len(moofs) >= 2
    # A version 1 box gives its time on the media timeline: 2.5 s, before the second fragment.
    emsg = emsg_v1(1000, 2500, 2000, 7, OUT)
    (media / "video.cmfv").write_bytes(data[:moofs[1]] + emsg + data[moofs[1]:])
    subprocess.run([str(ISMTOOL), "create", "-o", str(media / "v.ism"),
                    str(media / "video.cmfv")], check=True, capture_output=True)
    for p in media.iterdir():
        p.chmod(0o644)
    n.start(r"location ~ \.(ism|isml|mp4)(/|$) { usp_handle_ism; }")
    ranges = date_ranges(media_playlist(n, "v.ism", "?hls_fmp4"))
    assert len(ranges) == 1
    assert abs(seconds_of(ranges[0]["START-DATE"]) - 2.5) < 0.001
    assert float(ranges[0]["PLANNED-DURATION"]) == pytest.approx(2.0, abs=0.001)
    same_cue(section_of(ranges[0], "OUT"), OUT)
    events = mpd_events(n.get("/v/v.ism/.mpd").text)
    assert [round(t, 3) for t, _, _ in events] == [2.5]


def test_ismtool_refuses_a_cue_list_or_track_with_a_bad_cue(tmp_path):
    broken = bytearray(OUT)
    broken[-1] ^= 0xFF  # the CRC no longer matches
    (tmp_path / "bad.json").write_text(json.dumps(
        [{"time": 1, "scte35": base64.b64encode(broken).decode()}]))
    r = subprocess.run([str(ISMTOOL), "cues", str(tmp_path / "bad.json"), "-o",
                        str(tmp_path / "bad.mp4")], capture_output=True, text=True)
    assert r.returncode != 0 and "cue 1: bad SCTE-35 cue" in r.stderr, r.stderr
    init, fragments = event_track(1000, 4000, 2000, [(2000, None, 1, bytes(broken))])
    (tmp_path / "bad-track.mp4").write_bytes(init + b"".join(fragments))
    r = subprocess.run([str(ISMTOOL), "create", "-o", str(tmp_path / "t.ism"),
                        str(tmp_path / "bad-track.mp4")], capture_output=True, text=True)
    assert r.returncode != 0 and "sample 2" in r.stderr and "CRC" in r.stderr, r.stderr


# --- splice-accurate segments -------------------------------------------------------------


def segment_starts_hls(playlist: str) -> list[float]:
    starts, t = [], 0.0
    for line in playlist.splitlines():
        if line.startswith("#EXTINF:"):
            starts.append(round(t, 3))
            t += float(line.split(":", 1)[1].rstrip(","))
    return starts


def segment_starts_dash(mpd_text: str, content: str = "video") -> list[float]:
    """Segment starts (seconds) of the first adaptation set of `content` (one period)."""
    scale = int(ET.fromstring(mpd_text).find(
        f".//d:AdaptationSet[@contentType='{content}']/d:SegmentTemplate", MPD_NS)
        .get("timescale"))
    return [round(t / scale, 3) for t, _ in timeline(mpd_text, content)]


def segment_starts_smooth(manifest: str) -> list[float]:
    index = ET.fromstring(manifest).find("StreamIndex[@Type='video']")
    scale = int(index.get("TimeScale"))
    starts, t = [], 0
    for c in index.iterfind("c"):
        t = int(c.get("t", t))
        for _ in range(int(c.get("r", "1"))):
            starts.append(round(t / scale, 3))
            t += int(c.get("d"))
    return starts


def test_splice_media_starts_a_segment_at_each_splice_point(make_nginx):
    """Key frames every second; a break from 3 s to 5 s and another at 6.5 s, where the encoder
    put no key frame. With `splice_media` every format starts a segment at 3 s and 5 s (and
    at the key frame after 6.5 s, logged); without it, segments are the regular 2 s."""
    source = ffmpeg_made("gop1s.mp4", [
        "-f", "lavfi", "-i", "testsrc=size=320x180:rate=25:duration=10",
        "-f", "lavfi", "-i", "sine=frequency=440:duration=10",
        "-c:v", "libx264", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0",
        "-c:a", "aac", "-movflags", "+faststart"])
    n = make_nginx()
    media = n.root / "v"
    media.mkdir(mode=0o755)
    (media / "gop1s.mp4").write_bytes(source.read_bytes())
    cues = [{"time": 3.0, "out": True, "id": 5, "duration": 2.0},
            {"time": 5.0, "out": False, "id": 5},
            {"time": 6.5, "out": True, "id": 6, "duration": 1.0}]
    titles(media, "gop1s.mp4", cues, 10, {
        "spliced.ism": ["--splice_media=true"], "plain.ism": [],
        "periods.ism": ["--splice_media=true", "--mpd.splice_periods=true"]})
    n.start(r"location ~ \.(ism|isml|mp4)(/|$) { usp_handle_ism; }")

    def starts(name):
        return {
            "hls": segment_starts_hls(media_playlist(n, name)),
            "hls_fmp4": segment_starts_hls(media_playlist(n, name, "?hls_fmp4")),
            "dash": segment_starts_dash(n.get(f"/v/{name}/.mpd").text),
            "smooth": segment_starts_smooth(n.get(f"/v/{name}/Manifest").text),
        }

    for form, got in starts("spliced.ism").items():
        assert {3.0, 5.0, 7.0} <= set(got), (form, got)
    for form, got in starts("plain.ism").items():
        assert got == [0.0, 2.0, 4.0, 6.0, 8.0], (form, got)
    assert n.log_lines("splice_media: no key frame"), n.log_text()[-2000:]
    # The audio follows the video's boundaries (DASH lists it on its own timeline).
    audio_starts = segment_starts_dash(n.get("/v/spliced.ism/.mpd").text, "audio")
    assert any(abs(a - 3.0) < 0.025 for a in audio_starts), audio_starts

    # mpd_splice_periods: a period starts at each splice point (7 s for the one at 6.5 s,
    # where its segment starts); each period's media and cues are on its own timeline.
    mpd = ET.fromstring(n.get("/v/periods.ism/.mpd").text)
    periods = mpd.findall("d:Period", MPD_NS)
    assert [p.get("start") for p in periods] == ["PT0S", "PT3.000S", "PT5.000S", "PT7.000S"]
    assert mpd.get("mediaPresentationDuration") == ET.fromstring(
        n.get("/v/spliced.ism/.mpd").text).get("mediaPresentationDuration")
    covered = []
    for period, start in zip(periods, [0.0, 3.0, 5.0, 7.0]):
        video = next(a for a in period.iterfind("d:AdaptationSet", MPD_NS)
                     if a.get("contentType") == "video")
        template = video.find("d:SegmentTemplate", MPD_NS)
        scale = int(template.get("timescale"))
        assert int(template.get("presentationTimeOffset", "0")) == round(start * scale)
        first = template.find("d:SegmentTimeline/d:S", MPD_NS)
        assert int(first.get("t")) == round(start * scale)
        events = [(int(e.get("presentationTime")) - int(es.get("presentationTimeOffset", "0")))
                  / int(es.get("timescale"))
                  for es in period.iterfind("d:EventStream", MPD_NS)
                  for e in es.iterfind("d:Event", MPD_NS)]
        covered.append([round(start + t, 3) for t in events])
        # The period's first segment answers.
        rep = video.find("d:Representation", MPD_NS).get("id")
        url = template.get("media").replace("$RepresentationID$", rep).replace(
            "$Time$", first.get("t"))
        assert n.get(f"/v/periods.ism/dash/{url}").status_code == 200
    # Each cue in the period its time falls in (the one at 6.5 s before its period, which
    # starts where its segment does).
    assert covered == [[], [3.0], [5.0, 6.5], []]


# --- live --------------------------------------------------------------------------------

LIVE_LOCATION = """
        location /live/ {
            usp_handle_ism;
            client_max_body_size 0;
        }"""

TIMESCALE = 1000
LIVE_OUT = splice_insert(77, True, 6.0, 4.0)
LIVE_IN = splice_insert(77, False, 10.0)
LIVE_PLACEMENT = time_signal(14.0, 0x34, 4321, "ADID0000002", 2.0)
LIVE_CUES = [(6000, 4000, 77, LIVE_OUT), (10000, None, 77, LIVE_IN),
             (14000, 2000, 4321, LIVE_PLACEMENT)]


def push_cmaf(n, channel, loops):
    url = n.url(f"/live/{channel}.isml/Streams")
    video = ["-map", "0:v", "-c", "copy", "-movflags",
             "empty_moov+separate_moof+default_base_moof+cmaf+frag_keyframe", "-f", "mp4"]
    audio = ["-map", "0:a", "-c", "copy", "-frag_duration", "2000000", "-movflags",
             "empty_moov+separate_moof+default_base_moof+cmaf", "-f", "mp4"]
    return subprocess.Popen(
        ["ffmpeg", "-v", "error", "-re", "-stream_loop", str(loops), "-i", str(SOURCE),
         *video, f"{url}(video.cmfv)", *audio, f"{url}(audio.cmfa)"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def channel_media_time(n, channel) -> float:
    """Seconds of media the channel's live edge is at (the MPD's newest video segment end)."""
    r = n.get(f"/live/{channel}.isml/.mpd")
    segments = timeline(r.text) if r.status_code == 200 else []
    if not segments:
        return -1.0
    scale = int(ET.fromstring(r.text).find(
        ".//d:AdaptationSet[@contentType='video']/d:SegmentTemplate", MPD_NS).get("timescale"))
    t, d = segments[-1]
    return (t + d) / scale


def test_cues_pushed_beside_a_live_stream_reach_hls_and_dash(make_nginx):
    n = make_nginx(workers=2)
    live = live_dir(n, cues=60)
    n.start(LIVE_LOCATION)
    encoder = push_cmaf(n, "cues", loops=5)  # 24 s
    try:
        init, fragments = event_track(TIMESCALE, 24000, 2000, LIVE_CUES)
        url = n.url("/live/cues.isml/Streams(scte35.cmfm)")
        statuses = []
        # Each fragment goes once the media reached its end, as an encoder sends it (one
        # POST per segment, each with the init segment).
        for k, fragment in enumerate(fragments[:9]):
            wait_for(lambda: channel_media_time(n, "cues") >= 2.0 * k + 2.0, timeout=30,
                     what=f"media past {2 * k + 2} s")
            statuses.append(requests.post(url, data=init + fragment, timeout=30).status_code)
        assert all(s in (200, 201, 204) for s in statuses), statuses
        # A cue whose section is broken: refused, nothing of it kept.
        broken = bytearray(time_signal(18.0, 0x34, 99, "ADID0000003"))
        broken[5] ^= 0x01
        bad = event_fragment(10, 18000, [(2000, emib(0, 0xFFFFFFFF, 99, bytes(broken)))])
        r = requests.post(url, data=init + bad, timeout=30)
        assert r.status_code == 400, (r.status_code, r.text)
        assert r.headers.get("X-Origin-Error") == "INGEST_BAD_CUE"
        # A second stream that brings only a bad cue leaves no track behind.
        r = requests.post(n.url("/live/cues.isml/Streams(other.cmfm)"), data=init + bad,
                          timeout=30)
        assert r.status_code == 400
        tracks = [p.name for p in (live / "cues.isml.archive").iterdir() if "=" in p.name]
        assert sorted(t.split("=")[0] for t in tracks) == ["audio", "scte35", "video"], tracks

        mpd_text = n.get("/live/cues.isml/.mpd").text
        anchor = seconds_of(ET.fromstring(mpd_text).get("availabilityStartTime"))
        events = mpd_events(mpd_text)
        assert [round(t, 3) for t, _, _ in events] == [6.0, 10.0, 14.0], mpd_text
        for (_, section, _), made in zip(events, [LIVE_OUT, LIVE_IN, LIVE_PLACEMENT]):
            same_cue(section, made)

        master = n.get("/live/cues.isml/.m3u8").text
        uri = next(line for line in master.splitlines() if line and not line.startswith("#"))
        playlist = n.get(f"/live/cues.isml/{uri}").text
        ranges = date_ranges(playlist)
        assert len(ranges) == 3, playlist
        starts = [seconds_of(r["START-DATE"]) - anchor for r in ranges]
        assert starts[0] == pytest.approx(6.0, abs=0.001)
        assert starts[1] == pytest.approx(6.0, abs=0.001)  # the return closes the break
        assert float(ranges[1]["DURATION"]) == pytest.approx(4.0, abs=0.001)
        assert starts[2] == pytest.approx(14.0, abs=0.001)
        same_cue(section_of(ranges[0], "OUT"), LIVE_OUT)
        same_cue(section_of(ranges[1], "IN"), LIVE_IN)
        same_cue(section_of(ranges[2], "OUT"), LIVE_PLACEMENT)
        # A wall-clock subclip of the archive keeps the cues inside it (the return at 10 s).
        def utc(secs):
            return datetime.datetime.fromtimestamp(anchor + secs, datetime.timezone.utc) \
                .strftime("%Y-%m-%dT%H:%M:%SZ")
        clip = n.get(f"/live/cues.isml/.mpd?vbegin={utc(8)}&vend={utc(12)}").text
        # (The clip's period starts at its first media: presentation times stay media times,
        # and the stream's offset is that media's start.)
        assert [round(int(e.get("presentationTime")) / 90_000, 3)
                for _, _, e in mpd_events(clip)] == [10.0], clip
        cues = smooth_cues(n, "/live/cues.isml")
        assert [round(t, 3) for t, _ in cues] == [6.0, 10.0, 14.0]
        for (_, section), made in zip(cues, [LIVE_OUT, LIVE_IN, LIVE_PLACEMENT]):
            same_cue(section, made)
        # The program date-times agree with the MPD's anchor.
        first_date = next(line for line in playlist.splitlines()
                          if line.startswith("#EXT-X-PROGRAM-DATE-TIME:"))
        assert (seconds_of(first_date.split(":", 1)[1]) - anchor) % 2.0 == pytest.approx(
            0.0, abs=0.01)
        # The cues are archived with the channel: an nginx restarted reads them back.
        encoder.kill()
        encoder.wait()
        conf = (n.prefix / "conf" / "nginx.conf").read_text()
        n.stop()
        n.start_config(conf)
        after = mpd_events(n.get("/live/cues.isml/.mpd").text)
        assert [(round(t, 3), section) for t, section, _ in after] == [
            (round(t, 3), section) for t, section, _ in events]
    finally:
        encoder.kill()
        encoder.wait()


def test_emsg_boxes_pushed_with_video_fragments_are_cues(make_nginx):
    """In-band events as an encoder sends them: `emsg` boxes before a fragment's `moof`, in
    the video stream itself. They are archived with the fragment; a bad cue refuses the
    fragment it came with."""
    n = make_nginx()
    live_dir(n, em=60)
    n.start(LIVE_LOCATION)
    init, fragments = cmaf_pieces()
    url = n.url("/live/em.isml/Streams(video.cmfv)")
    assert requests.post(url, data=init, timeout=30).status_code == 200
    cue = emsg_v1(90_000, 225_000, 90_000 * 4, 77, LIVE_OUT)  # 2.5 s, 4 s long
    broken = bytearray(LIVE_IN)
    broken[-2] ^= 0x10
    for k, fragment in enumerate(fragments):
        if k == len(fragments) - 1:
            # The last fragment comes with a bad cue first: refused, then sent clean.
            bad = emsg_v1(90_000, 90_000 * 7, 0, 78, bytes(broken))
            r = requests.post(url, data=bad + fragment, timeout=30)
            assert r.status_code == 400 and r.headers.get("X-Origin-Error") == "INGEST_BAD_CUE"
            mpd = ET.fromstring(n.get("/live/em.isml/.mpd").text)
            listed = mpd.findall(".//d:AdaptationSet/d:SegmentTemplate/d:SegmentTimeline/d:S",
                                 MPD_NS)
            assert sum(int(s.get("r", "0")) + 1 for s in listed) == len(fragments) - 1
        data = (cue if k == 1 else b"") + fragment
        assert requests.post(url, data=data, timeout=30).status_code == 200
    mpd_text = n.get("/live/em.isml/.mpd").text
    events = mpd_events(mpd_text)
    assert [round(t, 3) for t, _, _ in events] == [2.5], mpd_text
    same_cue(events[0][1], LIVE_OUT)
    master = n.get("/live/em.isml/.m3u8?hls_fmp4").text
    uri = next(line for line in master.splitlines() if line and not line.startswith("#"))
    playlist = n.get(f"/live/em.isml/{uri}").text
    anchor = seconds_of(ET.fromstring(mpd_text).get("availabilityStartTime"))
    ranges = date_ranges(playlist)
    assert len(ranges) == 1, playlist
    assert seconds_of(ranges[0]["START-DATE"]) - anchor == pytest.approx(2.5, abs=0.001)
    assert float(ranges[0]["PLANNED-DURATION"]) == pytest.approx(4.0, abs=0.001)
    same_cue(section_of(ranges[0], "OUT"), LIVE_OUT)


def test_a_smooth_sparse_cue_track_beside_a_smooth_push(make_nginx):
    """A Smooth encoder's SCTE-35 track: `urim` samples holding bare sections, one fragment
    per cue (`tfxd` times, gaps between), pushed beside ffmpeg's Smooth push."""
    n = make_nginx(workers=2)
    live_dir(n, sparse=60)
    n.start(LIVE_LOCATION)
    smooth = ["-c", "copy", "-movflags", "+isml+delay_moov", "-f", "ismv"]
    encoder = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-re", "-stream_loop", "4", "-i", str(SOURCE), *smooth,
         n.url("/live/sparse.isml/Streams(enc)")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        scale = 10_000_000
        init = event_track_init(scale, entry=urim_entry(SCTE35_BIN))
        url = n.url("/live/sparse.isml/Streams(scte35)")
        for k, (at, section) in enumerate([(6.0, LIVE_OUT), (10.0, LIVE_IN)]):
            wait_for(lambda: channel_media_time(n, "sparse") >= at + 1.0, timeout=30,
                     what=f"media past {at + 1} s")
            fragment = sparse_fragment(k + 1, int(at * scale), scale // 10, section)
            r = requests.post(url, data=init + fragment, timeout=30)
            assert r.status_code == 200, (r.status_code, r.text)
        mpd_text = n.get("/live/sparse.isml/.mpd").text
        events = mpd_events(mpd_text)
        assert [round(t, 3) for t, _, _ in events] == [6.0, 10.0], mpd_text
        for (_, section, _), made in zip(events, [LIVE_OUT, LIVE_IN]):
            same_cue(section, made)
        master = n.get("/live/sparse.isml/.m3u8").text
        uri = next(line for line in master.splitlines() if line and not line.startswith("#"))
        ranges = date_ranges(n.get(f"/live/sparse.isml/{uri}").text)
        assert [r.get("SCTE35-OUT", r.get("SCTE35-IN"))[2:].lower() for r in ranges] == [
            LIVE_OUT.hex(), LIVE_IN.hex()]
        assert [round(t, 3) for t, _ in smooth_cues(n, "/live/sparse.isml")] == [6.0, 10.0]
    finally:
        encoder.kill()
        encoder.wait()


def test_an_in_band_splice_point_starts_a_live_segment(make_nginx):
    """Key frames every 0.4 s, a fragment each: ingest groups them into segments of a second
    or more. A cue in band at the start of the fragment at 0.8 s starts a segment there."""
    stream = ffmpeg_made("gop04.cmfv", [
        "-f", "lavfi", "-i", "testsrc=size=320x180:rate=25:duration=6",
        "-c:v", "libx264", "-g", "10", "-keyint_min", "10", "-sc_threshold", "0",
        "-movflags", "empty_moov+separate_moof+default_base_moof+cmaf+frag_keyframe",
        "-f", "mp4"])
    init, fragments = split_cmaf(stream.read_bytes())
    n = make_nginx()
    live_dir(n, plain=60, spliced=60)
    n.start(LIVE_LOCATION)
    cue = emsg_v1(90_000, 72_000, 90_000 * 2, 9, LIVE_OUT)  # 0.8 s
    for channel in ("plain", "spliced"):
        # One long POST, as an encoder keeps it open: its fragments are assembled.
        body = init + b"".join((cue if channel == "spliced" and k == 2 else b"") + f
                               for k, f in enumerate(fragments))
        url = n.url(f"/live/{channel}.isml/Streams(video.cmfv)")
        assert requests.post(url, data=body, timeout=30).status_code == 200
    plain = segment_starts_dash(n.get("/live/plain.isml/.mpd").text)
    spliced = segment_starts_dash(n.get("/live/spliced.isml/.mpd").text)
    assert 0.8 not in plain and 0.8 in spliced, (plain, spliced)
    assert [round(t, 3) for t, _, _ in mpd_events(n.get("/live/spliced.isml/.mpd").text)] == [0.8]


def test_metadata_tracks_the_origin_cannot_read_are_refused(make_nginx):
    """A `meta` track of another kind (here `mett`, text metadata) is 415; a metadata fragment
    over 1 MiB is 413 at its header. Nothing of either is kept."""
    n = make_nginx()
    live = live_dir(n, odd=60)
    n.start(LIVE_LOCATION)
    url = n.url("/live/odd.isml/Streams(other.cmfm)")
    mett = box(b"mett", bytes(6) + b"\0\1" + b"\0" + b"text/plain\0")
    init = event_track_init(1000, entry=mett)
    r = requests.post(url, data=init + event_fragment(1, 0, [(2000, b"hello")]), timeout=30)
    assert (r.status_code, r.headers.get("X-Origin-Error")) == (415, "INGEST_UNSUPPORTED")
    big = event_fragment(1, 0, [(2000, emib(0, 0xFFFFFFFF, 1, bytes(2 << 20)))])
    r = requests.post(n.url("/live/odd.isml/Streams(big.cmfm)"),
                      data=event_track_init(1000) + big, timeout=30)
    assert (r.status_code, r.headers.get("X-Origin-Error")) == (413, "INGEST_TOO_LARGE")
    archive = live / "odd.isml.archive"
    assert not archive.exists() or not [p for p in archive.iterdir() if "=" in p.name]
