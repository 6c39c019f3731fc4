"""VOD packaging through a real nginx, checked with real clients: ffmpeg decodes every DASH and
fMP4-HLS rendition and the decoded frames (video) and samples (audio) equal the source's; the
Smooth manifest and fragments have the structure clients need; headers, HEAD, Range, ETag/304
and errors behave as docs/COMPAT.md says."""

import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET

import pytest
import requests

from helpers.media import FIXTURES, ISMTOOL, LADDER, MPD_NS, frame_hashes, media_dir


@pytest.fixture(params=[1, 2], ids=["1worker", "2workers"])
def origin(make_nginx, request):
    n = make_nginx(workers=request.param)
    media = n.root / "v"
    media.mkdir(mode=0o755)
    for f in LADDER + ["progressive.mp4", "smooth.ismv", "ladder-video-360.mp4",
                       "ladder-audio-eng.mp4", "subtitles-eng.mp4"]:
        shutil.copy(FIXTURES / f, media / f)
    # Subtitles three ways: TTML in a progressive MP4 (ffmpeg's), and WebVTT and TTML packaged
    # as fragmented CMAF text tracks by ismtool.
    for src, out in [("subtitles-eng.vtt", "subtitles-wvtt.cmft"),
                     ("subtitles-eng.ttml", "subtitles-stpp.cmft")]:
        subprocess.run([str(ISMTOOL), "text", str(FIXTURES / src), "--language", "eng",
                        "-o", str(media / out)], check=True, capture_output=True)
    for name, text in [("subs", "subtitles-eng.mp4"), ("subs-wvtt", "subtitles-wvtt.cmft"),
                       ("subs-stpp", "subtitles-stpp.cmft")]:
        subprocess.run([str(ISMTOOL), "create", "-o", str(media / f"{name}.ism"),
                        *[str(media / f) for f in ["ladder-video-360.ismv",
                                                   "ladder-audio-eng.isma", text]]],
                       check=True, capture_output=True)
    subprocess.run([str(ISMTOOL), "create", "-o", str(media / "ladder.ism"),
                    *[str(media / f) for f in LADDER]], check=True, capture_output=True)
    subprocess.run([str(ISMTOOL), "create", "-o", str(media / "mp4s.ism"),
                    str(media / "ladder-video-360.mp4"), str(media / "ladder-audio-eng.mp4")],
                   check=True, capture_output=True)
    for p in media.iterdir():
        p.chmod(0o644)
    return n.start(r"location ~ \.(ism|isml|mp4)(/|$) { usp_handle_ism; }")


def test_dash_mpd_structure(origin):
    r = origin.get("/v/ladder.ism/.mpd")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/dash+xml"
    mpd = ET.fromstring(r.content)
    assert mpd.get("type") == "static"
    assert mpd.get("profiles").startswith("urn:mpeg:dash:profile:isoff-live:2011")
    period = mpd.find("d:Period", MPD_NS)
    assert period.find("d:BaseURL", MPD_NS).text == "dash/"
    sets = period.findall("d:AdaptationSet", MPD_NS)
    kinds = [(s.get("contentType"), s.get("lang")) for s in sets]
    assert kinds == [("video", None), ("audio", "eng"), ("audio", "fra")]
    reps = [rep.get("id") for s in sets for rep in s.findall("d:Representation", MPD_NS)]
    assert len(reps) == 5 and reps[0].startswith("video=") and reps[3].startswith("audio_eng=")
    video = sets[0]
    assert video.get("frameRate") == "25"
    for rep in video.findall("d:Representation", MPD_NS):
        assert rep.get("codecs").startswith("avc1.") and int(rep.get("width")) > 0
    tmpl = video.find("d:SegmentTemplate", MPD_NS)
    assert tmpl.get("media") == "ladder-$RepresentationID$-$Time$.dash"
    assert tmpl.get("initialization") == "ladder-$RepresentationID$.dash"
    total = sum(int(s.get("d")) * (int(s.get("r", 0)) + 1)
                for s in tmpl.find("d:SegmentTimeline", MPD_NS))
    assert total == 4 * int(tmpl.get("timescale"))


@pytest.mark.parametrize("index,source,stream", [
    (0, "ladder-video-360.ismv", "0:v"), (1, "ladder-video-480.ismv", "0:v"),
    (2, "ladder-video-720.ismv", "0:v"), (0, "ladder-audio-eng.isma", "0:a"),
    (1, "ladder-audio-fra.isma", "0:a")])
def test_dash_is_frame_exact(origin, index, source, stream):
    kind = stream.split(":")[1]
    got = frame_hashes(origin.url("/v/ladder.ism/.mpd"), f"0:{kind}:{index}")
    want = frame_hashes(str(FIXTURES / source), stream)
    assert got == want


def test_hls_fmp4_is_frame_exact(origin):
    master = origin.get("/v/ladder.ism/.m3u8?hls_fmp4")
    assert master.status_code == 200
    assert master.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    text = master.text
    assert text.startswith("#EXTM3U")
    assert 'TYPE=AUDIO,GROUP-ID="audio-aacl",NAME="eng",LANGUAGE="eng"' in text
    variants = [line for line in text.splitlines() if line.startswith("hls/")]
    assert len(variants) == 3
    for line in text.splitlines():
        if line.startswith("#EXT-X-STREAM-INF"):
            for attr in ["BANDWIDTH=", "AVERAGE-BANDWIDTH=", "CODECS=\"avc1.", "RESOLUTION=",
                         "FRAME-RATE=25.000", 'AUDIO="audio-aacl"']:
                assert attr in line
    sources = {"video=": ["ladder-video-360.ismv", "ladder-video-480.ismv", "ladder-video-720.ismv"]}
    for uri, src in zip(variants, sources["video="]):
        got = frame_hashes(origin.url(f"/v/ladder.ism/{uri}"), "0:v")
        assert got == frame_hashes(str(FIXTURES / src), "0:v"), uri
    audio = origin.url("/v/ladder.ism/hls/ladder-audio_fra=128000.m3u8")
    assert frame_hashes(audio, "0:a") == frame_hashes(str(FIXTURES / "ladder-audio-fra.isma"), "0:a")
    playlist = origin.get("/v/ladder.ism/hls/ladder-audio_eng=128000.m3u8").text
    assert "#EXT-X-MAP:URI=\"ladder-audio_eng=128000.m4s\"" in playlist
    assert playlist.rstrip().endswith("#EXT-X-ENDLIST")


def test_progressive_sources_and_bare_mp4(origin):
    # A server manifest over progressive MP4 files, and a bare MP4 used as one.
    got = frame_hashes(origin.url("/v/mp4s.ism/.mpd"), "0:v:0")
    assert got == frame_hashes(str(FIXTURES / "ladder-video-360.mp4"), "0:v")
    got = frame_hashes(origin.url("/v/progressive.mp4/.mpd"), "0:v:0")
    assert got == frame_hashes(str(FIXTURES / "progressive.mp4"), "0:v")
    # The source's edit list trims 1024 samples of AAC priming: decoding the file drops the
    # first frame. The origin sends every sample and signals the trim with an edit list in the
    # init segment; ffmpeg's DASH reader ignores edit lists in fragmented input, so it decodes
    # the primed frame too. Every other frame is identical.
    got = frame_hashes(origin.url("/v/progressive.mp4/.mpd"), "0:a:0")
    want = frame_hashes(str(FIXTURES / "progressive.mp4"), "0:a")
    assert len(got) == len(want) + 1
    assert got[1:] == want


def boxes(data: bytes):
    out, pos = [], 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        out.append((kind.decode(), pos, size))
        if size < 8:
            break
        pos += size
    return out


def webvtt_cues(text: str) -> list[tuple[str, str, str]]:
    """(start, end, text) of each cue of a WebVTT document, as ffmpeg writes them."""
    cues = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        lines = [line for line in block.split("\n") if line]
        for i, line in enumerate(lines):
            if "-->" in line:
                start, end = (t.strip().split()[0] for t in line.split("-->"))
                cues.append((start, end, "\n".join(lines[i + 1:])))
                break
    return cues


@pytest.mark.parametrize("ism", ["subs", "subs-wvtt", "subs-stpp"])
@pytest.mark.parametrize("master", [".m3u8", ".m3u8?hls_fmp4"], ids=["ts", "fmp4"])
def test_hls_webvtt_subtitles(origin, master, ism):
    """The text track (TTML in MP4, or WebVTT / TTML in CMAF) is offered as a WebVTT rendition;
    ffmpeg's HLS reader gets the cues of the source subtitle file back, with their times."""
    base = f"/v/{ism}.ism"
    text = origin.get(f"{base}/{master}").text
    media = [line for line in text.splitlines() if line.startswith("#EXT-X-MEDIA:TYPE=SUBTITLES")]
    assert len(media) == 1, text
    assert 'LANGUAGE="eng"' in media[0] and 'GROUP-ID="textstream"' in media[0]
    assert all('SUBTITLES="textstream"' in line for line in text.splitlines()
               if line.startswith("#EXT-X-STREAM-INF"))
    uri = media[0].split('URI="')[1].split('"')[0]
    playlist = origin.get(f"{base}/{uri}")
    assert playlist.status_code == 200
    segments = [line for line in playlist.text.splitlines() if line and not line.startswith("#")]
    video = text.split("#EXT-X-STREAM-INF")[1].splitlines()[1]
    assert len(segments) == origin.get(f"{base}/{video}").text.count("#EXTINF")
    first = origin.get(f"{base}/{uri.rsplit('/', 1)[0] + '/' if '/' in uri else ''}"
                       f"{segments[0]}")
    assert first.headers["Content-Type"] == "text/vtt"
    assert first.text.startswith("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:")
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", origin.url(f"{base}/{uri}"),
                          "-f", "webvtt", "-"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    source = subprocess.run(["ffmpeg", "-v", "error", "-i", str(FIXTURES / "subtitles-eng.vtt"),
                             "-f", "webvtt", "-"], capture_output=True, text=True, timeout=60)
    assert webvtt_cues(out.stdout) == webvtt_cues(source.stdout) != []


def test_text_tracks_in_dash_and_smooth(origin):
    """CMAF text tracks appear in the MPD and the Smooth manifest and their segments are served;
    the WebVTT one carries wvtt samples."""
    mpd = ET.fromstring(origin.get("/v/subs-wvtt.ism/.mpd").content)
    sets = mpd.findall("d:Period/d:AdaptationSet", MPD_NS)
    text = [a for a in sets if a.get("contentType") == "text"]
    assert len(text) == 1 and text[0].get("lang") == "eng"
    rep = text[0].find("d:Representation", MPD_NS)
    assert rep.get("codecs") == "wvtt" and text[0].get("mimeType") == "application/mp4"
    init = origin.get(f"/v/subs-wvtt.ism/dash/subs-wvtt-{rep.get('id')}.dash")
    assert init.status_code == 200 and b"wvtt" in init.content
    media = origin.get(f"/v/subs-wvtt.ism/dash/subs-wvtt-{rep.get('id')}-0.dash")
    assert media.status_code == 200 and b"vttc" in media.content and b"Cue 1" in media.content
    smooth = origin.get("/v/subs-stpp.ism/Manifest").text
    assert 'Type="text"' in smooth and 'FourCC="TTML"' in smooth


def test_smooth_manifest_and_fragments(origin):
    r = origin.get("/v/ladder.ism/Manifest")
    assert r.status_code == 200
    root = ET.fromstring(r.content)
    assert root.tag == "SmoothStreamingMedia" and root.get("TimeScale") == "10000000"
    streams = root.findall("StreamIndex")
    assert [s.get("Type") for s in streams] == ["video", "audio", "audio"]
    fetched = 0
    for s in streams:
        url = s.get("Url")
        times, t = [], 0
        for c in s.findall("c"):
            t = int(c.get("t", t))
            for _ in range(int(c.get("r", 1))):
                times.append(t)
                t += int(c.get("d"))
        assert len(times) == int(s.get("Chunks"))
        for q in s.findall("QualityLevel"):
            assert q.get("FourCC") in ("H264", "AACL") and q.get("CodecPrivateData")
            for start in times:
                path = url.replace("{bitrate}", q.get("Bitrate")).replace("{start time}", str(start))
                f = origin.get(f"/v/ladder.ism/{path}")
                assert f.status_code == 200, path
                kinds = [k for k, _, _ in boxes(f.content)]
                assert kinds == ["moof", "mdat"], kinds
                assert bytes.fromhex("6d1d9b0542d544e680e2141daff757b2") in f.content  # tfxd
                fetched += 1
    assert fetched == 3 * 2 + 2 + 2


def test_headers_conditional_head_and_range(origin):
    url = "/v/ladder.ism/dash/ladder-video=165000-0.dash"
    r = origin.get(url)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "video/mp4"
    assert int(r.headers["Content-Length"]) == len(r.content)
    assert r.headers["Last-Modified"] and r.headers["ETag"]
    assert [k for k, _, _ in boxes(r.content)] == ["styp", "moof", "mdat"]
    assert origin.get(url, headers={"If-None-Match": r.headers["ETag"]}).status_code == 304
    h = origin.head(url)
    assert h.status_code == 200 and h.content == b""
    assert h.headers["Content-Length"] == r.headers["Content-Length"]
    part = origin.get(url, headers={"Range": "bytes=10-99"})
    assert part.status_code == 206 and part.content == r.content[10:100]
    tail = origin.get(url, headers={"Range": "bytes=-300"})
    assert tail.content == r.content[-300:]
    m = origin.get("/v/ladder.ism/.mpd")
    assert origin.get("/v/ladder.ism/.mpd", headers={"If-None-Match": m.headers["ETag"]}).status_code == 304
    assert origin.get("/v/ladder.ism/Manifest").headers["Content-Type"] == "application/vnd.ms-sstr+xml"


def test_errors(origin):
    for path in ["/v/ladder.ism/dash/ladder-video=999-0.dash",           # no such bitrate
                 "/v/ladder.ism/dash/ladder-video=165000-12345.dash",     # no such time
                 "/v/ladder.ism/QualityLevels(165000)/Fragments(video=7)",
                 "/v/ladder.ism/hls/ladder-video=165000-99.m4s",
                 "/v/missing.ism/.mpd"]:
        assert origin.get(path).status_code == 404, path
    # Forms not built yet answer an honest 501, never a wrong answer.
    assert origin.get("/v/ladder.ism/hls/ladder-video=165000-1.m4s?x=1").status_code == 200
    assert origin.get("/v/ladder.ism/ladder-video=165000-1.aac").status_code == 404  # not audio
    assert origin.get("/v/ladder.ism/ladder-video=165000.f4m").status_code == 404  # usp_handle_f4f off
    assert origin.crashes() == []


def test_changed_source_is_reindexed(origin):
    before = origin.get("/v/progressive.mp4/.mpd").text
    target = origin.root / "v" / "progressive.mp4"
    shutil.copy(FIXTURES / "ladder-video-720.mp4", target)
    target.chmod(0o644)
    after = origin.get("/v/progressive.mp4/.mpd").text
    assert after != before
    assert 'width="640"' in after and "audio" not in after


def test_max_bitrate(origin):
    mpd = origin.get("/v/ladder.ism/.mpd?max_bitrate=300000").text
    assert "video=165000" in mpd and "video=273000" in mpd and "video=432000" not in mpd


def test_hls_ts_is_frame_exact(origin):
    master = origin.get("/v/ladder.ism/.m3u8")
    assert master.status_code == 200
    text = master.text
    # Version 4 (the default): audio in EXT-X-MEDIA groups, video-only variants.
    assert '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="eng",LANGUAGE="eng"' in text
    variants = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert variants == ["ladder-video=165000.m3u8", "ladder-video=273000.m3u8",
                        "ladder-video=432000.m3u8"]
    for uri, src in zip(variants, ["ladder-video-360.ismv", "ladder-video-480.ismv",
                                   "ladder-video-720.ismv"]):
        assert frame_hashes(origin.url(f"/v/ladder.ism/{uri}"), "0:v") == \
            frame_hashes(str(FIXTURES / src), "0:v"), uri
    audio = origin.url("/v/ladder.ism/ladder-audio_fra=128000.m3u8")
    assert frame_hashes(audio, "0:a") == frame_hashes(str(FIXTURES / "ladder-audio-fra.isma"), "0:a")
    # Version 3: audio and video muxed in one variant.
    v3 = origin.get("/v/ladder.ism/.m3u8?hls_client_manifest_version=3").text
    muxed = [line for line in v3.splitlines() if line and not line.startswith("#")]
    # Child URLs carry the request's query.
    assert muxed[0] == "ladder-audio_eng=128000-video=165000.m3u8?hls_client_manifest_version=3"
    url = origin.url(f"/v/ladder.ism/{muxed[2]}")
    assert frame_hashes(url, "0:v") == frame_hashes(str(FIXTURES / "ladder-video-720.ismv"), "0:v")
    assert frame_hashes(url, "0:a") == frame_hashes(str(FIXTURES / "ladder-audio-eng.isma"), "0:a")
    seg = origin.get("/v/ladder.ism/ladder-audio_eng=128000-video=432000-1.ts")
    assert seg.status_code == 200 and seg.headers["Content-Type"] == "video/MP2T"
    assert len(seg.content) % 188 == 0 and seg.content[0] == 0x47
    assert all(seg.content[i] == 0x47 for i in range(0, len(seg.content), 188))


def test_filter_expressions(origin):
    q = "filter=" + requests.utils.quote('(type=="video"&&systemBitrate<300000)||type!="video"')
    mpd = origin.get(f"/v/ladder.ism/.mpd?{q}").text
    assert "video=165000" in mpd and "video=273000" in mpd and "video=432000" not in mpd
    assert "audio_eng=128000" in mpd and "audio_fra=128000" in mpd
    q = "filter=" + requests.utils.quote('systemLanguage=="fra"||type=="video"')
    m3u8 = origin.get(f"/v/ladder.ism/.m3u8?{q}").text
    assert "fra" in m3u8 and 'LANGUAGE="eng"' not in m3u8
    for bad in ['type==video', '(type=="video"', 'bogus==1']:
        r = origin.get("/v/ladder.ism/.mpd?filter=" + requests.utils.quote(bad))
        assert r.status_code == 400, bad
    none = origin.get("/v/ladder.ism/.mpd?filter=" + requests.utils.quote('type=="nothing"'))
    assert none.status_code == 404


def test_vbegin_vend_subclips(origin):
    mpd = origin.get("/v/ladder.ism/.mpd?vbegin=2").text
    assert 'mediaPresentationDuration="PT2.' in mpd
    got = frame_hashes(origin.url("/v/ladder.ism/.mpd?vbegin=2"), "0:v:2")
    want = frame_hashes(str(FIXTURES / "ladder-video-720.ismv"), "0:v")
    assert got == want[50:]
    # vend cuts at the first keyframe at or after it; vbegin at the one at or before it.
    got = frame_hashes(origin.url("/v/ladder.ism/.m3u8?vbegin=0.5&vend=1.5"), "0:v:0")
    assert got == frame_hashes(str(FIXTURES / "ladder-video-360.ismv"), "0:v")[:50]
    smooth = origin.get("/v/ladder.ism/Manifest?vbegin=2").text
    assert 'Chunks="1"' in smooth
    assert origin.get("/v/ladder.ism/.mpd?vbegin=100").status_code == 404
    assert origin.get("/v/ladder.ism/.mpd?vbegin=2020-01-01T00:00:00Z").status_code == 400


def test_empty_track_is_415(make_nginx):
    n = make_nginx()
    media = n.root / "v"
    media.mkdir(mode=0o755)
    for f in ["empty-video.cmfv", "ladder-audio-eng.isma"]:
        shutil.copy(FIXTURES / f, media / f)
    # A CMAF header without fragments (a live track never fed), listed in a server manifest.
    (media / "e.ism").write_text("""<?xml version="1.0" encoding="utf-8"?>
<smil xmlns="http://www.w3.org/2001/SMIL20/Language"><head/><body><switch>
<video src="empty-video.cmfv" systemBitrate="400000"/>
<audio src="ladder-audio-eng.isma" systemBitrate="128000"/>
</switch></body></smil>""")
    for p in media.iterdir():
        p.chmod(0o644)
    n.start(r"location ~ \.(ism|isml|mp4)(/|$) { usp_handle_ism; }")
    for path in ["/v/e.ism/Manifest", "/v/e.ism/.mpd", "/v/e.ism/.m3u8"]:
        r = n.get(path)
        assert r.status_code == 415, path
        assert r.headers.get("X-Origin-Error") == "FMP4_MISSING_TFRA"
    assert n.log_lines("FMP4_MISSING_TFRA")


def test_pread_sources(make_nginx):
    """usp_disable_mmap: the same answers, read with pread."""
    n = make_nginx()
    media = n.root / "v"
    media.mkdir(mode=0o755)
    shutil.copy(FIXTURES / "progressive.mp4", media / "a.mp4")
    (media / "a.mp4").chmod(0o644)
    n.start(r"location ~ \.(ism|isml|mp4)(/|$) { usp_handle_ism; usp_disable_mmap; }")
    assert frame_hashes(n.url("/v/a.mp4/.mpd"), "0:v:0") == \
        frame_hashes(str(FIXTURES / "progressive.mp4"), "0:v")
    assert frame_hashes(n.url("/v/a.mp4/.m3u8"), "0:v:0") == \
        frame_hashes(str(FIXTURES / "progressive.mp4"), "0:v")


def test_malformed_source_is_500_and_logged(make_nginx):
    n = make_nginx()
    media = n.root / "v"
    media.mkdir(mode=0o755)
    data = (FIXTURES / "progressive.mp4").read_bytes()
    (media / "cut.mp4").write_bytes(data[:3000])      # moov cut short
    junk = bytearray(data)
    junk[1530:1700] = b"\xff" * 170                  # sample sizes overwritten
    (media / "junk.mp4").write_bytes(bytes(junk))
    for p in media.iterdir():
        p.chmod(0o644)
    n.start(r"location ~ \.(ism|isml|mp4)(/|$) { usp_handle_ism; }")
    workers = n.worker_pids()
    for path in ["/v/cut.mp4/.mpd", "/v/junk.mp4/.mpd", "/v/junk.mp4/Manifest",
                 "/v/cut.mp4/dash/cut-video=1000-0.dash"]:
        r = n.get(path)
        assert r.status_code == 500, path
    lines = n.log_lines("cut.mp4")
    assert lines and "offset" in lines[0], n.log_text()
    assert n.get("/v/cut.mp4").status_code == 200  # the file itself still downloads
    assert n.worker_pids() == workers and n.crashes() == []


def test_legacy_hls_segment_by_time(origin):
    """`QualityLevels(b)/Fragments(track=t,format=m3u8-aapl)` is the TS segment starting at t
    (track timescale); a time no segment starts at is 404."""
    mpd = ET.fromstring(origin.get("/v/ladder.ism/.mpd").content)
    video = [a for a in mpd.findall("d:Period/d:AdaptationSet", MPD_NS)
             if a.get("contentType") == "video"][0]
    timeline = video.find("d:SegmentTemplate/d:SegmentTimeline", MPD_NS)
    first = timeline.find("d:S", MPD_NS)
    t2 = int(first.get("t", "0")) + int(first.get("d"))
    legacy = origin.get(f"/v/ladder.ism/QualityLevels(165000)/Fragments(video={t2},format=m3u8-aapl)")
    assert legacy.status_code == 200 and legacy.headers["Content-Type"] == "video/MP2T"
    assert legacy.content == origin.get("/v/ladder.ism/ladder-video=165000-2.ts").content
    missing = origin.get(f"/v/ladder.ism/QualityLevels(165000)/Fragments(video={t2 + 1},format=m3u8-aapl)")
    assert missing.status_code == 404


def test_hls_iframe_playlists(origin, tmp_path):
    master = origin.get("/v/ladder.ism/.m3u8").text
    uris = [line.split('URI="')[1].rstrip('"') for line in master.splitlines()
            if line.startswith("#EXT-X-I-FRAME-STREAM-INF")]
    assert uris == ["keyframes/ladder-video=165000.m3u8", "keyframes/ladder-video=273000.m3u8",
                    "keyframes/ladder-video=432000.m3u8"]
    playlist = origin.get("/v/ladder.ism/keyframes/ladder-video=432000.m3u8").text
    assert "#EXT-X-I-FRAMES-ONLY" in playlist
    lines = playlist.splitlines()
    entries = [(lines[i + 1], lines[i + 2]) for i, l in enumerate(lines) if l.startswith("#EXTINF")]
    assert len(entries) == 2
    source = frame_hashes(str(FIXTURES / "ladder-video-720.ismv"), "0:v")
    for k, (byterange, uri) in enumerate(entries):
        length, offset = byterange.split(":")[1].split("@")
        assert uri.startswith("../")
        r = origin.get(f"/v/ladder.ism/{uri[3:]}",
                       headers={"Range": f"bytes={offset}-{int(offset) + int(length) - 1}"})
        assert r.status_code == 206
        part = tmp_path / f"kf{k}.ts"
        part.write_bytes(r.content)
        # The range holds exactly the key frame: it decodes to the source's frame.
        assert frame_hashes(str(part), "0:v") == [source[k * 50]]


def test_hls_fmp4_iframe_playlists(origin, tmp_path):
    """fMP4 I-frame playlists: each byte range is the fragment's boxes and its key frame, which,
    after the init segment, decodes to the source's frame."""
    master = origin.get("/v/ladder.ism/.m3u8?hls_fmp4").text
    uris = [line.split('URI="')[1].rstrip('"') for line in master.splitlines()
            if line.startswith("#EXT-X-I-FRAME-STREAM-INF")]
    assert uris == [f"keyframes/ladder-video={b}.m3u8?hls_fmp4" for b in (165000, 273000, 432000)]
    playlist = origin.get(f"/v/ladder.ism/{uris[2]}").text
    assert "#EXT-X-I-FRAMES-ONLY" in playlist and "#EXT-X-VERSION:7" in playlist
    lines = playlist.splitlines()
    init_uri = next(l for l in lines if l.startswith("#EXT-X-MAP")).split('URI="')[1].rstrip('"')
    assert init_uri == "../hls/ladder-video=432000.m4s?hls_fmp4"
    init = origin.get(f"/v/ladder.ism/{init_uri[3:]}").content
    entries = [(lines[i + 1], lines[i + 2]) for i, l in enumerate(lines) if l.startswith("#EXTINF")]
    assert len(entries) == 2
    source = frame_hashes(str(FIXTURES / "ladder-video-720.ismv"), "0:v")
    for k, (byterange, uri) in enumerate(entries):
        length, offset = byterange.split(":")[1].split("@")
        assert uri.startswith("../hls/") and offset == "0"
        whole = origin.get(f"/v/ladder.ism/{uri[3:]}").content
        r = origin.get(f"/v/ladder.ism/{uri[3:]}", headers={"Range": f"bytes=0-{int(length) - 1}"})
        assert r.status_code == 206 and r.content == whole[:int(length)]
        # The range ends exactly after the key frame: styp, moof, the mdat header, one sample.
        mdat_at = next(at for kind, at, _ in boxes(whole) if kind == "mdat")
        first_sample = int(length) - mdat_at - 8
        assert mdat_at > 0 and first_sample > 0
        # The part, its mdat cut to the one sample, decodes to the source's key frame.
        part = bytearray(r.content)
        part[mdat_at:mdat_at + 4] = struct.pack(">I", 8 + first_sample)
        f = tmp_path / f"kf{k}.mp4"
        f.write_bytes(init + bytes(part))
        assert frame_hashes(str(f), "0:v")[:1] == [source[k * 50]]


def test_hls_packed_audio(origin, tmp_path):
    """`.aac` segments: an ID3 tag with the Apple timestamp, then ADTS frames that decode to the
    source's audio frames."""
    seg = origin.get("/v/ladder.ism/ladder-audio_eng=128000-2.aac")
    assert seg.status_code == 200 and seg.headers["Content-Type"] == "audio/aac"
    body = seg.content
    assert body[:3] == b"ID3" and b"com.apple.streaming.transportStreamTimestamp\0" in body
    tag_len = 10 + ((body[6] << 21) | (body[7] << 14) | (body[8] << 7) | body[9])
    pts = struct.unpack(">Q", body[tag_len - 8:tag_len])[0]
    # Segment 2 starts 2 s into the presentation, on the TS timeline (10 s offset).
    assert abs(pts - (10 + 2) * 90000) < 90000 * 0.05
    assert body[tag_len] == 0xFF and body[tag_len + 1] & 0xF0 == 0xF0
    part = tmp_path / "seg.aac"
    part.write_bytes(body)
    got = frame_hashes(str(part), "0:a")
    ts = origin.get("/v/ladder.ism/ladder-audio_eng=128000-2.ts").content
    (tmp_path / "seg.ts").write_bytes(ts)
    assert got == frame_hashes(str(tmp_path / "seg.ts"), "0:a") != []


def test_small_cache_still_serves_everything(make_nginx):
    """With `origin_cache_size 1m` the worker keeps little, yet every title is served
    correctly, over and over, while entries are evicted and rebuilt."""
    n = make_nginx()
    media = n.root / "v"
    media.mkdir(mode=0o755)
    names = ["progressive.mp4", "ladder-video-360.mp4", "ladder-audio-eng.mp4", "hevc.mp4"]
    for f in names:
        shutil.copy(FIXTURES / f, media / f)
        (media / f).chmod(0o644)
    n.start(r"location ~ \.(ism|isml|mp4)(/|$) { usp_handle_ism; }",
            http_extra="origin_cache_size 1m;")
    first = {f: n.get(f"/v/{f}/.mpd").text for f in names}
    for _ in range(3):
        for f in names:
            r = n.get(f"/v/{f}/.mpd")
            assert r.status_code == 200 and r.text == first[f]
            assert n.get(f"/v/{f}/.m3u8").status_code == 200
    assert n.crashes() == []


def test_a_source_listed_several_times_gives_unique_ids(make_nginx):
    """An `.ism` that lists one source (or one track) several times: it is one track, so every
    DASH Representation@id, HLS variant and Smooth QualityLevel is listed once. Two different
    tracks that claim the same name and bitrate both stay: the later one takes the next free
    bitrate, so each keeps a URL of its own."""
    n = make_nginx()
    media = media_dir(n, ["ladder-video-360.ismv", "ladder-video-480.ismv",
                          "ladder-audio-eng.isma"], {})
    (media / "twice.ism").write_text("""<?xml version="1.0" encoding="utf-8"?>
<smil xmlns="http://www.w3.org/2001/SMIL20/Language"><head/><body><switch>
<video src="ladder-video-360.ismv"/>
<video src="ladder-video-480.ismv" systemBitrate="700000"/>
<audio src="ladder-audio-eng.isma"/>
<video src="ladder-video-360.ismv"/>
<audio src="ladder-audio-eng.isma"/>
<video src="ladder-video-360.ismv" systemBitrate="700000"/>
</switch></body></smil>""")
    (media / "twice.ism").chmod(0o644)
    n.start(r"location ~ \.(ism|isml|mp4)(/|$) { usp_handle_ism; usp_handle_f4f; }")
    mpd = ET.fromstring(n.get("/v/twice.ism/.mpd").content)
    ids = [r.get("id") for r in mpd.iterfind(".//d:Representation", MPD_NS)]
    assert len(ids) == len(set(ids)) == 4, ids
    assert {"video=700000", "video=700001"} <= set(ids), ids
    master = n.get("/v/twice.ism/.m3u8").text
    variants = [line for line in master.splitlines() if line and not line.startswith("#")]
    assert len(variants) == len(set(variants)) == 3, master
    smooth = ET.fromstring(n.get("/v/twice.ism/Manifest").content)
    for stream in smooth.iterfind("StreamIndex"):
        rates = [q.get("Bitrate") for q in stream.iterfind("QualityLevel")]
        assert len(rates) == len(set(rates)), (stream.get("Type"), rates)
    f4m = n.get("/v/twice.ism/twice.f4m").text
    media_urls = re.findall(r'<media[^>]* url="([^"]+)"', f4m)
    assert len(media_urls) == len(set(media_urls)) == 3, f4m
    # Every listed rendition has its own, servable, URL.
    for variant in variants:
        assert n.get(f"/v/twice.ism/{variant}").status_code == 200, variant
    assert frame_hashes(n.url("/v/twice.ism/.mpd"), "0:v:0") == \
        frame_hashes(str(FIXTURES / "ladder-video-360.ismv"), "0:v")
