"""HDS (`usp_handle_f4f`) through a real nginx: the F4M manifest and its bootstrap, F4F
fragments whose FLV tags, put behind an FLV header, decode with ffmpeg to the source's frames;
live channels with their HDS statuses."""

import xml.etree.ElementTree as ET

import pytest
import requests

from helpers.hds import F4M, media_of
from helpers.live import cmaf_stream, live_dir
from helpers.media import FIXTURES, LADDER, boxes, frame_hashes, media_dir

LOCATION = r"location ~ \.(ism|isml|mp4)(/|$) { usp_handle_ism; usp_handle_f4f; }"


@pytest.fixture(params=[1, 2], ids=["1worker", "2workers"])
def origin(make_nginx, request):
    n = make_nginx(workers=request.param)
    media_dir(n, LADDER + ["progressive.mp4"], {"ladder.ism": LADDER})
    return n.start(LOCATION + r"""
        location ^~ /nohds/ { alias html/v/; usp_handle_ism; }""")


def flv_of_fragments(fragments: list[bytes]) -> bytes:
    """The FLV tags of every fragment's mdat behind an FLV header (audio and video)."""
    flv = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00"
    for f in fragments:
        kinds = [k for k, _ in boxes(f)]
        assert kinds[0] == b"afra" and b"moof" in kinds and kinds[-1] == b"mdat", kinds
        flv += dict(boxes(f))[b"mdat"]
    return flv


def test_f4m_manifest_lists_every_variant_with_its_bootstrap(origin):
    r = origin.get("/v/ladder.ism/.f4m")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/f4m+xml"
    root = ET.fromstring(r.content)
    assert root.find(f"{F4M}streamType").text == "recorded"
    assert float(root.find(f"{F4M}duration").text) > 0
    media = media_of(r.content)
    assert len(media) == 3  # each video bitrate with the default audio
    bitrates = sorted(int(m.get("bitrate")) for m in root.iter(f"{F4M}media"))
    assert bitrates == sorted(bitrates) and bitrates[0] > 0
    for url, numbers in media:
        assert numbers[0] == 1 and len(numbers) >= 2
        for n in numbers:
            frag = origin.get(f"/v/ladder.ism/{url}Seg1-Frag{n}")
            assert frag.status_code == 200 and frag.headers["Content-Type"] == "video/f4f"
        assert origin.get(f"/v/ladder.ism/{url}Seg1-Frag{numbers[-1] + 1}").status_code == 404
    # The legacy Manifest(format=f4m-f4f) is the same manifest.
    assert origin.get("/v/ladder.ism/Manifest(format=f4m-f4f)").content == r.content
    # Without usp_handle_f4f HDS is not served; the other formats are.
    assert origin.get("/nohds/ladder.ism/.f4m").status_code == 404
    assert origin.get("/nohds/ladder.ism/.mpd").status_code == 200


def test_f4f_fragments_decode_to_the_source_frames(origin, tmp_path):
    media = media_of(origin.get("/v/progressive.mp4/.f4m").content)
    assert len(media) == 1
    url, numbers = media[0]
    fragments = [origin.get(f"/v/progressive.mp4/{url}Seg1-Frag{n}").content for n in numbers]
    flv = tmp_path / "all.flv"
    flv.write_bytes(flv_of_fragments(fragments))
    source = str(FIXTURES / "progressive.mp4")
    assert frame_hashes(str(flv), "0:v") == frame_hashes(source, "0:v")
    # FLV cannot signal the AAC priming an MP4 trims, so the FLV decodes one more leading frame.
    audio, expected = frame_hashes(str(flv), "0:a"), frame_hashes(source, "0:a")
    assert audio[-len(expected):] == expected and len(audio) - len(expected) <= 1
    # A ladder variant: video frame-exact too.
    media = media_of(origin.get("/v/ladder.ism/.f4m").content)
    url, numbers = media[0]
    fragments = [origin.get(f"/v/ladder.ism/{url}Seg1-Frag{n}").content for n in numbers]
    flv.write_bytes(flv_of_fragments(fragments))
    assert frame_hashes(str(flv), "0:v") == frame_hashes(
        str(FIXTURES / "ladder-video-360.ismv"), "0:v")


def test_live_hds_manifest_window_and_statuses(make_nginx):
    n = make_nginx(workers=2)
    live_dir(n, h=6)
    n.start("""
        location /live/ {
            usp_handle_ism;
            usp_handle_f4f;
            client_max_body_size 0;
        }""")
    init, fragments = cmaf_stream(n, loops=3)
    url = n.url("/live/h.isml/Streams(video.cmfv)")
    assert requests.post(url, data=init).status_code == 200
    for f in fragments:
        assert requests.post(url, data=f).status_code == 200
    r = n.get("/live/h.isml/.f4m")
    assert r.status_code == 200
    assert ET.fromstring(r.content).find(f"{F4M}streamType").text == "live"
    (variant, numbers), = media_of(r.content)
    # The window holds the last fragments only, numbered as the channel counts them.
    assert numbers[0] > 1 and numbers[-1] == len(fragments)
    for k in numbers:
        assert n.get(f"/live/h.isml/{variant}Seg1-Frag{k}").status_code == 200
    # Before the window 404, past the live edge 503 (docs/COMPAT.md §5).
    before = n.get(f"/live/h.isml/{variant}Seg1-Frag{numbers[0] - 1}")
    assert before.status_code == 404
    ahead = n.get(f"/live/h.isml/{variant}Seg1-Frag{numbers[-1] + 1}")
    assert ahead.status_code == 503 and ahead.headers["X-Origin-Error"] == "FRAGMENT_NOT_AVAILABLE"
    # A live fragment expires with the archive, not like a manifest.
    last = n.get(f"/live/h.isml/{variant}Seg1-Frag{numbers[-1]}")
    assert int(last.headers["Cache-Control"].split("=")[1]) > 1
