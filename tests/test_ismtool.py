"""ismtool against ffprobe and against itself: `inspect --json` agrees with ffprobe on every
fixture (track count, codec, duration, sample count); `create` writes server manifests that
parse back identically and carry what mp4split writes."""

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from helpers.media import FIXTURES, ISMTOOL

MEDIA = sorted(p.name for p in FIXTURES.iterdir()
               if p.suffix in (".mp4", ".ismv", ".isma", ".cmfv", ".cmfa"))
# ffprobe codec names -> the RFC 6381 prefix ismtool reports.
CODEC_PREFIX = {"h264": "avc1", "hevc": "hvc1", "aac": "mp4a", "ac3": "ac-3", "eac3": "ec-3"}


@pytest.fixture(scope="module", autouse=True)
def built():
    if not ISMTOOL.exists():
        pytest.fail("target/release/ismtool missing: run cargo build --release -p origin-cli")


def ffprobe(path):
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_packets", "-show_entries",
         "stream=codec_name,codec_tag_string,time_base,duration_ts,nb_read_packets,width,height,"
         "channels,sample_rate", "-of", "json", str(path)],
        capture_output=True, text=True, check=True).stdout
    return json.loads(out)["streams"]


def inspect(path):
    out = subprocess.run([str(ISMTOOL), "inspect", "--json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


@pytest.mark.parametrize("name", MEDIA)
def test_inspect_agrees_with_ffprobe(name):
    path = FIXTURES / name
    probe = ffprobe(path)
    info = inspect(path)
    assert len(info["tracks"]) == len(probe)
    for mine, theirs in zip(info["tracks"], probe):
        assert mine["sample_count"] == int(theirs.get("nb_read_packets", 0)), name
        prefix = CODEC_PREFIX.get(theirs.get("codec_name", ""))
        if prefix:
            assert mine["codec"].startswith(prefix), (name, mine["codec"])
        else:
            assert mine["fourcc"] == theirs["codec_tag_string"]
        if mine["sample_count"] == 0:
            continue  # a header without fragments: nothing to time
        num, den = map(int, theirs["time_base"].split("/"))
        ff_seconds = int(theirs["duration_ts"]) * num / den
        # ffprobe trims AAC priming via the edit list; allow two audio frames.
        assert abs(mine["duration_seconds"] - ff_seconds) < 0.05, (name, mine, theirs)
        if "width" in theirs:
            assert (mine["width"], mine["height"]) == (theirs["width"], theirs["height"])
        if "sample_rate" in theirs:
            assert mine["sample_rate"] == int(theirs["sample_rate"])
            assert mine["channels"] == theirs["channels"]


def test_inspect_text_output_and_errors(tmp_path):
    r = subprocess.run([str(ISMTOOL), "inspect", str(FIXTURES / "smooth.ismv")],
                       capture_output=True, text=True)
    assert r.returncode == 0
    assert "moof @" in r.stdout and "tracks:" in r.stdout
    bad = tmp_path / "bad.mp4"
    bad.write_bytes((FIXTURES / "progressive.mp4").read_bytes()[:3000])
    r = subprocess.run([str(ISMTOOL), "inspect", str(bad)], capture_output=True, text=True)
    assert r.returncode == 1
    assert "bad.mp4" in r.stderr and "offset" in r.stderr


def test_create_vod_manifest(tmp_path):
    inputs = ["ladder-video-360.ismv", "ladder-video-720.ismv", "ladder-audio-eng.isma",
              "ladder-audio-fra.isma", "subtitles-eng.mp4"]
    for f in inputs:
        shutil.copy(FIXTURES / f, tmp_path / f)
    out = tmp_path / "video.ism"
    r = subprocess.run([str(ISMTOOL), "create", "-o", str(out), *[str(tmp_path / f) for f in inputs],
                        "--hls.client_manifest_version=4", "--mpd.segment_template=time"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ns = {"s": "http://www.w3.org/2001/SMIL20/Language"}
    root = ET.parse(out).getroot()
    metas = {m.get("name"): m.get("content") for m in root.iterfind("s:head/s:meta", ns)}
    assert metas == {"hls_client_manifest_version": "4", "mpd_segment_template": "time"}
    tracks = list(root.find("s:body/s:switch", ns))
    assert [t.tag.split("}")[1] for t in tracks] == ["video", "video", "audio", "audio", "textstream"]
    assert [t.get("src") for t in tracks] == inputs
    langs = [t.get("systemLanguage") for t in tracks]
    assert langs == [None, None, "eng", "fra", "eng"]
    for t in tracks:
        params = {p.get("name"): p.get("value") for p in t}
        assert int(t.get("systemBitrate")) > 0
        assert {"trackID", "trackName", "timeScale", "FourCC", "CodecPrivateData"} <= set(params)
    v = {p.get("name"): p.get("value") for p in tracks[0]}
    assert v["FourCC"] == "H264" and v["MaxWidth"] == "320" and v["CodecPrivateData"].startswith("00000001")
    a = {p.get("name"): p.get("value") for p in tracks[2]}
    assert a["FourCC"] == "AACL" and a["SamplingRate"] == "48000" and a["trackName"] == "audio_eng"
    # Re-creating gives byte-identical output (stable writer).
    first = out.read_bytes()
    subprocess.run([str(ISMTOOL), "create", "-o", str(out), *[str(tmp_path / f) for f in inputs],
                    "--hls.client_manifest_version=4", "--mpd.segment_template=time"], check=True,
                   capture_output=True)
    assert out.read_bytes() == first


def test_create_live_publishing_point(tmp_path):
    out = tmp_path / "channel.isml"
    r = subprocess.run([str(ISMTOOL), "create", "-o", str(out), "--archiving=1",
                        "--archive_length=3600", "--dvr_window_length=30",
                        "--restart_on_encoder_reconnect"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    root = ET.parse(out).getroot()
    ns = {"s": "http://www.w3.org/2001/SMIL20/Language"}
    metas = {m.get("name"): m.get("content") for m in root.iterfind("s:head/s:meta", ns)}
    assert metas == {"archiving": "1", "archive_length": "3600", "dvr_window_length": "30",
                     "restart_on_encoder_reconnect": "true"}


def test_create_writes_inputs_relative_to_the_manifest_as_mp4split_does(tmp_path):
    """An input outside the manifest's folder is written with `..` (the origin reads it as
    long as it stays inside the location's root)."""
    out = tmp_path / "titles" / "x.ism"
    out.parent.mkdir()
    r = subprocess.run([str(ISMTOOL), "create", "-o", str(out), str(FIXTURES / "progressive.mp4")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    src = ET.fromstring(out.read_text()).find(".//{*}video").get("src")
    assert src.startswith("../") and src.endswith("/tests/fixtures/progressive.mp4")
    assert (out.parent / src).resolve() == (FIXTURES / "progressive.mp4").resolve()


def test_create_refuses_bad_input(tmp_path):
    cases = [
        (["-o", str(tmp_path / "x.txt"), str(FIXTURES / "progressive.mp4")], "must end in .ism"),
        (["-o", str(tmp_path / "x.ism")], "needs at least one input"),
        (["-o", str(tmp_path / "x.isml"), "--dvr_window_length=soon"], "dvr_window_length"),
    ]
    for args, message in cases:
        r = subprocess.run([str(ISMTOOL), "create", *args], capture_output=True, text=True)
        assert r.returncode == 1, args
        assert message in r.stderr, (args, r.stderr)
