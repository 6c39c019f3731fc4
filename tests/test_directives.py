"""Directives that change how requests are answered, each in a real nginx: `usp_iss_pass_through`
sends stored Smooth fragments as they are, `usp_skip_rewrite` turns the legacy URL rewrite rules
off."""

import shutil
import subprocess
import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

import pytest
import requests

from test_remote import smooth_urls
from test_vod import FIXTURES, ISMTOOL, LADDER


@pytest.fixture(params=[1, 2], ids=["1worker", "2workers"])
def origin(make_nginx, request):
    """The Smooth ladder behind three locations reading the same files: defaults, pass-through
    and no rewrite rules."""
    n = make_nginx(workers=request.param)
    media = n.root / "v"
    media.mkdir(mode=0o755)
    for f in LADDER + ["progressive.mp4"]:
        shutil.copy(FIXTURES / f, media / f)
    subprocess.run([str(ISMTOOL), "create", "-o", str(media / "ladder.ism"),
                    *[str(media / f) for f in LADDER]], check=True, capture_output=True)
    subprocess.run([str(ISMTOOL), "create", "-o", str(media / "mixed.ism"),
                    str(media / "progressive.mp4"), str(media / "ladder-audio-eng.isma")],
                   check=True, capture_output=True)
    for p in media.iterdir():
        p.chmod(0o644)
    return n.start(rf"""
        location /v/ {{ usp_handle_ism; }}
        location /pass/ {{ alias {media}/; usp_handle_ism; usp_iss_pass_through; }}
        location /strict/ {{ alias {media}/; usp_handle_ism; usp_skip_rewrite on; }}""")


def stored_fragments(path) -> dict[bytes, int]:
    """Each moof + mdat pair of an fMP4 file, as stored, with its offset."""
    data = path.read_bytes()
    found, at, moof = {}, 0, None
    while at + 8 <= len(data):
        size = int.from_bytes(data[at:at + 4], "big")
        kind = data[at + 4:at + 8]
        if size == 1:
            size = int.from_bytes(data[at + 8:at + 16], "big")
        if kind == b"moof":
            moof = at
        elif kind == b"mdat" and moof is not None:
            found[data[moof:at + size]] = moof
            moof = None
        at += size
    return found


def fragment_urls(n, base):
    def get(url):
        r = requests.get(url, timeout=30)
        assert r.status_code == 200, url
        return r
    return [u for u in smooth_urls(get, n.url(f"{base}/ladder.ism/Manifest"))[1:]]


def test_pass_through_sends_stored_smooth_fragments_byte_for_byte(origin):
    media = origin.root / "v"
    stored = {}
    for f in LADDER:
        stored.update({frag: f for frag in stored_fragments(media / f)})
    urls = fragment_urls(origin, "/pass")
    assert len(urls) >= 10  # five tracks, each in stored fragments
    seen = set()
    for url in urls:
        r = requests.get(url, timeout=30)
        assert r.status_code == 200, url
        assert r.content in stored, f"{url} is not a stored fragment"
        seen.add(r.content)
        if "video" in url:
            # Without the directive the fragment is packaged (tfdt added): other boxes, the
            # same samples. (Packaged audio follows the video's fragments, not its own.)
            packaged = requests.get(url.replace("/pass/", "/v/"), timeout=30)
            assert packaged.status_code == 200 and packaged.content != r.content
            assert r.content[-64:] == packaged.content[-64:]
            assert r.headers["ETag"] != packaged.headers["ETag"]
    assert len(seen) == len(urls)
    # The manifest lists the stored fragments: audio's own boundaries, not the video's.
    packaged_urls = [u.replace("/v/", "/pass/") for u in fragment_urls(origin, "/v")]
    assert [u for u in urls if "video" in u] == [u for u in packaged_urls if "video" in u]
    assert [u for u in urls if "audio" in u] != [u for u in packaged_urls if "audio" in u]
    # HEAD, Range and If-None-Match work on a fragment sent as stored too.
    url = urls[1]
    whole = requests.get(url, timeout=30)
    head = requests.head(url, timeout=30)
    assert int(head.headers["Content-Length"]) == len(whole.content)
    part = requests.get(url, headers={"Range": "bytes=8-99"}, timeout=30)
    assert part.status_code == 206 and part.content == whole.content[8:100]
    assert requests.get(url, headers={"If-None-Match": whole.headers["ETag"]},
                        timeout=30).status_code == 304


def test_pass_through_leaves_other_formats_and_other_sources_alone(origin):
    for path in ["ladder.ism/.mpd", "ladder.ism/.m3u8",
                 "ladder.ism/dash/ladder-video=165000.dash",
                 "ladder.ism/ladder-video=165000-2.ts", "mixed.ism/Manifest"]:
        passed, packaged = origin.get("/pass/" + path), origin.get("/v/" + path)
        assert passed.status_code == 200 and passed.content == packaged.content, path
    # A progressive MP4 has no stored fragments: its Smooth fragments are packaged as usual.
    for url in smooth_urls(lambda u: requests.get(u, timeout=30),
                           origin.url("/pass/mixed.ism/Manifest"))[1:4]:
        path = urlsplit(url).path
        assert origin.get(path).content == origin.get(path.replace("/pass/", "/v/")).content


LEGACY_SMOOTH = [
    ("manifest", "Manifest"),
    ("MANIFEST", "Manifest"),
    ("ladder.ismc", "Manifest"),
]


def test_rewrite_rules_apply_by_default_and_404_with_usp_skip_rewrite(origin):
    manifest = origin.get("/v/ladder.ism/Manifest")
    index = ET.fromstring(manifest.content).find("StreamIndex[@Type='video']")
    bitrate = index.find("QualityLevel").get("Bitrate")
    start = int(index.find("c").get("t", 0))
    name = index.get("Name")
    fragment = f"QualityLevels({bitrate})/Fragments({name}={start})"
    legacy = LEGACY_SMOOTH + [
        (f"qualitylevels({bitrate})/fragments({name}={start})", fragment),
        (f"QualityLevels({bitrate},Lang=und)/Fragments({name}={start})", fragment),
        ("Manifest(format=m3u8-aapl)", ".m3u8"),
        ("Manifest(format=m3u8-aapl-v3)", ".m3u8"),
        ("Manifest(format=mpd-time-csf)", ".mpd"),
        ("Manifest(format=mpd-time-cmaf)", ".mpd"),
        (f"QualityLevels({bitrate})/Manifest({name},format=m3u8-aapl)",
         f"ladder-{name}={bitrate}.m3u8"),
        (f"QualityLevels({bitrate})/Fragments({name}=i,format=mpd-time-csf)",
         f"dash/ladder-{name}={bitrate}.dash"),
        (f"QualityLevels({bitrate})/Fragments({name}={start},format=mpd-time-csf)",
         f"dash/ladder-{name}={bitrate}-{start}.dash"),
        (f"QualityLevels({bitrate})/Fragments({name}={start},format=m3u8-aapl)",
         f"ladder-{name}={bitrate}-1.ts"),
    ]
    for old, current in legacy:
        expected = origin.get(f"/v/ladder.ism/{current}")
        assert expected.status_code == 200, current
        rewritten = origin.get(f"/v/ladder.ism/{old}")
        assert rewritten.status_code == 200, old
        assert rewritten.headers["Content-Type"] == expected.headers["Content-Type"], old
        if not old.startswith("QualityLevels") or not current.endswith(".m3u8"):
            # A playlist names its segments relative to the URL asked: one a level deeper
            # differs in those names only.
            assert rewritten.content == expected.content, old
        assert origin.get(f"/strict/ladder.ism/{old}").status_code == 404, old
        assert origin.get(f"/strict/ladder.ism/{current}").status_code == 200, current
    assert origin.crashes() == []
