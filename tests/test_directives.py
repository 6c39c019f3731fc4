"""Directives that change how requests are answered, each in a real nginx: `usp_iss_pass_through`
sends stored Smooth fragments as they are, `usp_skip_rewrite` turns the legacy URL rewrite rules
off, `origin_status_map` (and the operators' Lua) answer other statuses."""

import os
import shutil
import socket
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from harness import ROOT, Nginx, builds
from helpers.live import cmaf_stream, example_origin, live_dir
from helpers.media import FIXTURES, ISMTOOL, LADDER, media_dir
from helpers.remote import smooth_urls


@pytest.fixture(params=[1, 2], ids=["1worker", "2workers"])
def origin(make_nginx, request):
    """The Smooth ladder behind three locations reading the same files: defaults, pass-through
    and no rewrite rules."""
    n = make_nginx(workers=request.param)
    media = media_dir(n, LADDER + ["progressive.mp4"], {
        "ladder.ism": LADDER, "mixed.ism": ["progressive.mp4", "ladder-audio-eng.isma"]})
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


# ------------------------------------------------------------------ status remapping
def live_channel_with_a_gap(n, channel):
    """A live channel fed per segment (no end of stream), with one fragment left out: the
    timeline has a gap inside the window and a live edge. Returns (bitrate, name, gap time,
    time past the edge) for Smooth fragment URLs."""
    init, fragments = cmaf_stream(n, loops=2)
    assert len(fragments) >= 5
    url = n.url(f"/live/{channel}.isml/Streams(video.cmfv)")
    assert requests.post(url, data=init).status_code == 200
    for k, f in enumerate(fragments):
        if k != 2:
            assert requests.post(url, data=f).status_code == 200
    manifest = ET.fromstring(n.get(f"/live/{channel}.isml/Manifest").content)
    index = manifest.find("StreamIndex[@Type='video']")
    times, t = [], 0
    for c in index.findall("c"):
        t = int(c.get("t", t))
        for _ in range(int(c.get("r", 1))):
            times.append((t, int(c.get("d"))))
            t += int(c.get("d"))
    # Where the left-out fragment would start: inside the window, and no fragment starts there.
    gap = times[1][0] + times[0][1]
    assert all(start != gap for start, _ in times)
    edge = times[-1][0] + times[-1][1]
    return index.find("QualityLevel").get("Bitrate"), index.get("Name"), gap, edge


def test_origin_status_map_answers_another_status_for_its_tokens(make_nginx):
    n = make_nginx(workers=2)
    live_dir(n)
    n.start("""
        origin_status_map 404 410 NOT_FOUND;
        location /live/ {
            usp_handle_ism;
            origin_live_auto_create on;
            client_max_body_size 0;
            origin_status_map 412 204 FRAGMENT_NOT_AVAILABLE;
        }
        location /plain/ {
            alias html/live/;
            usp_handle_ism;
        }
        location /vod/ {
            alias html/live/;
            usp_handle_ism;
        }""")
    bitrate, name, gap, edge = live_channel_with_a_gap(n, "c")
    fragment = f"c.isml/QualityLevels({bitrate})/Fragments({name}=%d)"
    # Past the live edge: "not available yet", 412, mapped to 204 (an empty answer).
    r = n.get("/live/" + fragment % edge)
    assert r.status_code == 204 and r.content == b""
    assert r.headers["X-Origin-Error"] == "FRAGMENT_NOT_AVAILABLE"
    # In the gap: "missing", also 412 but another token, so not mapped.
    r = n.get("/live/" + fragment % gap)
    assert r.status_code == 412 and r.headers["X-Origin-Error"] == "FRAGMENT_MISSING"
    # The keep-alive connection carries on after a 204.
    with requests.Session() as s:
        assert s.get(n.url("/live/" + fragment % edge)).status_code == 204
        assert s.get(n.url("/live/c.isml/Manifest")).status_code == 200
    # A location without a map of its own inherits the server's maps only.
    assert n.get("/plain/" + fragment % edge).status_code == 412
    assert n.get("/plain/missing.isml/Manifest").status_code == 410
    assert n.get("/plain/c.isml/nonsense").status_code == 404  # UNKNOWN_VIRTUAL_PATH
    assert n.get("/live/missing.isml/Manifest").status_code == 404  # the location's own maps


def test_origin_status_map_is_checked_at_nginx_t(make_nginx):
    n = make_nginx()
    for bad, why in [("origin_status_map 412 200;", "204 or an error status"),
                     ("origin_status_map 412;", "invalid number of arguments"),
                     ("origin_status_map 412 204 NO_SUCH;", "unknown error token"),
                     ("origin_status_map 412 204; origin_status_map 412 503;", "twice"),
                     # Codes nginx drops the connection for, or never sends as they are.
                     ("origin_status_map 502 444;", '"444" is not a status a client receives'),
                     ("origin_status_map 412 499;", '"499" is not a status a client receives'),
                     ("origin_status_map 404 408;", '"408" is not a status a client receives'),
                     ("origin_status_map 404 497;", '"497" is not a status a client receives')]:
        out = n.test_config(n.config(f"location / {{ usp_handle_ism; {bad} }}"))
        assert out.returncode != 0, bad
        assert "origin_status_map" in out.stderr and why in out.stderr, out.stderr


@pytest.mark.system_nginx
def test_lua_header_filter_remaps_our_statuses_on_debian_nginx(tmp_path):
    """The operators' remap from the product documentation, with Debian's nginx and its Lua
    module (libnginx-mod-http-lua): our error answers go through nginx's header filters."""
    debian = [b for b in builds() if b.version == "1.22.1"]
    assert debian, "the Debian nginx build is missing: run `make debian`"
    lua = Path("/usr/lib/nginx/modules/ngx_http_lua_module.so")
    ndk = Path("/usr/lib/nginx/modules/ndk_http_module.so")
    assert lua.exists() and ndk.exists(), "apt-get install libnginx-mod-http-lua (scripts/setup.sh)"
    n = Nginx(debian[0], workers=1)
    try:
        live_dir(n)
        n.start("""
            location /live/ {
                usp_handle_ism;
                origin_live_auto_create on;
                client_max_body_size 0;
                header_filter_by_lua_block {
                    if ngx.status == 412 then ngx.status = 204 end
                }
            }""", main_extra=f"load_module {ndk};\nload_module {lua};")
        bitrate, name, gap, edge = live_channel_with_a_gap(n, "c")
        for t in (edge, gap):
            r = n.get(f"/live/c.isml/QualityLevels({bitrate})/Fragments({name}={t})")
            assert r.status_code == 204 and r.content == b"", t
        assert n.get("/live/c.isml/Manifest").status_code == 200
        assert n.get("/live/missing.isml/Manifest").status_code == 404
    finally:
        n.cleanup()


# ------------------------------------------------------------------ documented snippets
def test_deny_sources_example_refuses_files_and_serves_virtual_paths(make_nginx):
    n = make_nginx(workers=1)
    media = n.root / "v"
    media.mkdir(mode=0o755)
    for f in LADDER + ["progressive.mp4"]:
        shutil.copy(FIXTURES / f, media / f)
    subprocess.run([str(ISMTOOL), "create", "-o", str(media / "ladder.ism"),
                    *[str(media / f) for f in LADDER]], check=True, capture_output=True)
    # Every kind of media file the documentation names, and a live server manifest.
    for ext in ["ismt", "cmfv", "cmfa", "cmft"]:
        (media / f"other.{ext}").write_bytes(b"\0" * 16)
    (media / "channel.isml").write_text("<smil/>")
    for p in media.iterdir():
        p.chmod(0o644)
    n.start_config(n.example_config(ROOT / "nginx-conf" / "deny-sources.conf",
                                    {"/var/www/usp": str(n.root)}))
    for path in ["ladder-video-360.ismv", "ladder-audio-eng.isma", "LADDER-AUDIO-FRA.ISMA",
                 "other.ismt", "other.cmfv", "other.cmfa", "other.cmft", "progressive.mp4",
                 "ladder.ism", "ladder.ism/", "LADDER.ISM", "Ladder.Ism/", "channel.isml",
                 "channel.isml/", "CHANNEL.ISML"]:
        assert n.get(f"/v/{path}").status_code == 403, path
    for path in ["ladder.ism/Manifest", "ladder.ism/.mpd", "ladder.ism/.m3u8",
                 "ladder.ism/dash/ladder-video=165000.dash"]:
        assert n.get(f"/v/{path}").status_code == 200, path


def status_from(n, source_address: str, method: str, path: str, body: bytes = b"") -> int:
    """The status of one request sent from `source_address` (any 127/8 address reaches the
    test nginx on 127.0.0.1)."""
    with socket.create_connection(("127.0.0.1", n.port), timeout=30,
                                  source_address=(source_address, 0)) as s:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: origin\r\nConnection: close\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        head = b""
        while b"\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
    return int(head.split(b" ", 2)[1])


def test_api_example_allows_127_0_0_1_and_refuses_another_loopback_address(make_nginx):
    n, channels = example_origin(make_nginx, "live-api.conf")
    body = b'<smil xmlns="http://www.w3.org/2001/SMIL20/Language"><head/><body/></smil>'
    assert status_from(n, "127.0.0.2", "PUT", "/api/channels/a.isml", body) == 403
    assert status_from(n, "127.0.0.2", "GET", "/api/channels/a.isml/state") == 403
    assert not (channels / "a.isml").exists()
    assert status_from(n, "127.0.0.1", "PUT", "/api/channels/a.isml", body) == 201
    assert status_from(n, "127.0.0.1", "GET", "/api/channels/a.isml/state") == 200
    # The playout location: reads for everyone but the statistics (they name the encoders'
    # addresses), pushes from the encoders' network only, and no API: channels are made and
    # removed through the management location alone.
    assert status_from(n, "127.0.0.2", "GET", "/channels/a.isml/state") == 200
    assert status_from(n, "127.0.0.2", "GET", "/channels/a.isml/statistics") == 403
    assert status_from(n, "127.0.0.1", "GET", "/channels/a.isml/statistics") == 200
    assert status_from(n, "127.0.0.2", "POST", "/channels/a.isml/Streams(s1)", b"x") == 403
    assert status_from(n, "127.0.0.2", "DELETE", "/channels/a.isml") == 403
    assert status_from(n, "127.0.0.2", "PUT", "/channels/a.isml", body) == 403
    assert status_from(n, "127.0.0.1", "DELETE", "/channels/a.isml") == 405
    assert (channels / "a.isml").exists()
    assert status_from(n, "127.0.0.2", "DELETE", "/api/channels/a.isml") == 403
    assert status_from(n, "127.0.0.1", "DELETE", "/api/channels/a.isml") == 204
    assert not (channels / "a.isml").exists()


# ------------------------------------------------------------------ where sources may live
def test_sources_in_sibling_folders_inside_the_root_are_served(make_nginx):
    """mp4split-style manifests point at shared media with `..`: served while the path stays
    inside the location's root (or alias); refused with 403 and a log line once it leaves it,
    symbolic links included."""
    n = make_nginx(workers=1)
    vod = n.root / "vod"
    title, shared = vod / "titles" / "movie", vod / "shared" / "audio"
    title.mkdir(parents=True)
    shared.mkdir(parents=True)
    shutil.copy(FIXTURES / "ladder-video-360.ismv", title / "video.ismv")
    shutil.copy(FIXTURES / "ladder-audio-eng.isma", shared / "eng.isma")
    out = subprocess.run([str(ISMTOOL), "create", "-o", str(title / "movie.ism"),
                          str(title / "video.ismv"), str(shared / "eng.isma")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    text = (title / "movie.ism").read_text()
    assert 'src="../../shared/audio/eng.isma"' in text and 'src="video.ismv"' in text
    # Outside the root: a file beside it, reached by climbing too far or through a link.
    outside = n.prefix / "outside.isma"
    shutil.copy(FIXTURES / "ladder-audio-eng.isma", outside)
    (vod / "titles" / "climb.ism").write_text(text.replace(
        "../../shared/audio/eng.isma", "../../../outside.isma").replace("video.ismv",
                                                                        "movie/video.ismv"))
    os.symlink(outside, shared / "linked.isma")
    (title / "linked.ism").write_text(text.replace("eng.isma", "linked.isma"))
    for p in [*vod.rglob("*")]:
        if not p.is_symlink():
            p.chmod(0o755 if p.is_dir() else 0o644)
    outside.chmod(0o644)
    n.start(r"""
        location /vod/ { usp_handle_ism; }
        location /aliased/ { alias html/vod/; usp_handle_ism; }
        location /narrow/ { alias html/vod/titles/; usp_handle_ism; }""")
    for base in ["/vod/titles/movie", "/aliased/titles/movie"]:
        mpd = n.get(f"{base}/movie.ism/.mpd")
        assert mpd.status_code == 200, (base, mpd.text)
        audio = n.get(f"{base}/movie.ism/dash/movie-audio_eng=128000.dash")
        assert audio.status_code == 200 and audio.content[4:8] == b"ftyp", base
    # This alias's root is titles/: shared/ lies outside it.
    for path in ["/narrow/movie/movie.ism/.mpd", "/vod/titles/climb.ism/.mpd",
                 "/vod/titles/movie/linked.ism/.mpd"]:
        r = n.get(path)
        assert r.status_code == 403 and r.headers["X-Origin-Error"] == "SOURCE_REFUSED", path
    assert n.log_lines("leads outside the location's root")
    assert n.log_lines("a symbolic link leads it outside")
    assert n.crashes() == []
