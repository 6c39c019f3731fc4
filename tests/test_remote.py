"""Remote sources through `ism_proxy_pass`: a second, plain nginx holds the media (static files,
ranges, ETags) and the origin reads it with ranged subrequests through nginx's proxy module.
Every URL a player fetches must give the same bytes as from local files, decoded frames must
equal the sources', and the backend must see only the requests the design allows."""

import itertools
import re
import shutil
import subprocess
import time

import pytest
import requests

from harness import ROOT, self_signed_cert, wait_for
from helpers.media import FIXTURES, ISMTOOL, frame_hashes
from helpers.remote import (assert_same_as_local, dash_urls, get_ok, hls_urls, publish,
                            smooth_urls)

SMOOTH_NS = ""
BACKEND_LOG = "log_format ranges '$uri|$http_range|$status|$body_bytes_sent';"


@pytest.fixture
def remote(make_nginx):
    """(origin reading the backend, local origin over the same files, backend)."""
    backend = make_nginx()
    publish(backend.root / "storage" / "v")
    backend.start(f"access_log {backend.prefix}/logs/backend.log ranges;",
                  http_extra=BACKEND_LOG)
    local = make_nginx()
    publish(local.root / "v")
    local.start(r"location ~ \.(ism|isml|mp4)(/|$) { usp_handle_ism; }")
    origin = make_nginx()
    origin.start(f"""
        location ^~ /video/proxy/ {{
            usp_handle_ism;
            ism_proxy_pass http://127.0.0.1:{backend.port}/storage/;
        }}""")
    return origin, local, backend


LOG_SYNC = "/__log_sync__/"
log_syncs = itertools.count()


def backend_requests(backend) -> list[tuple[str, str, int]]:
    """Every read the backend has answered. nginx logs a request just after it has sent the
    answer, so a reader can be faster than the log: a request of ours goes last, and once its
    line is in, so is every earlier one (the backend's one worker logs in the order it ends
    requests). Our requests are left out."""
    path = backend.prefix / "logs" / "backend.log"
    if not path.exists():
        return []
    marker = f"{LOG_SYNC}{next(log_syncs)}|"
    requests.get(backend.url(marker[:-1]), timeout=30)
    text = wait_for(lambda: marker in (t := path.read_text()) and t,
                    what="the backend's log line of our request")
    out = []
    for line in text.splitlines():
        uri, rng, status, _ = line.split("|")
        if not uri.startswith(LOG_SYNC):
            out.append((uri, rng, int(status)))
    return out


@pytest.mark.parametrize("ism,entry,crawl", [
    ("ladder.ism", ".mpd", dash_urls),
    ("ladder.ism", ".m3u8", hls_urls),
    ("ladder.ism", ".m3u8?hls_fmp4", hls_urls),
    ("ladder.ism", "Manifest", smooth_urls),
    ("mp4s.ism", ".mpd", dash_urls),
    ("mp4s.ism", ".m3u8", hls_urls),
    ("subs.ism", ".m3u8", hls_urls),
    ("progressive-tail.mp4", ".mpd", dash_urls),
    ("progressive.mp4", ".m3u8?hls_fmp4", hls_urls),
])
def test_every_url_is_byte_identical_to_local(remote, ism, entry, crawl):
    origin, local, _ = remote
    assert_same_as_local(origin, "/video/proxy", local, f"/v/{ism}/{entry}", crawl)


@pytest.mark.parametrize("entry,stream,source,source_stream", [
    ("ladder.ism/.mpd", "0:v:1", "ladder-video-480.ismv", "0:v"),
    ("ladder.ism/.m3u8?hls_fmp4", "0:a:0", "ladder-audio-eng.isma", "0:a"),
    ("mp4s.ism/.mpd", "0:v:0", "ladder-video-360.mp4", "0:v"),
])
def test_remote_sources_are_frame_exact(remote, entry, stream, source, source_stream):
    origin, _, _ = remote
    got = frame_hashes(origin.url(f"/video/proxy/v/{entry}"), stream)
    assert got == frame_hashes(str(FIXTURES / source), source_stream)


def test_hls_ts_from_remote_is_frame_exact(remote):
    origin, _, _ = remote
    master = origin.get("/video/proxy/v/ladder.ism/.m3u8?hls_client_manifest_version=3")
    assert master.status_code == 200, master.text
    variant = next(line for line in master.text.splitlines()
                   if line and not line.startswith("#"))
    got = frame_hashes(origin.url(f"/video/proxy/v/ladder.ism/{variant}"), "0:v")
    assert got == frame_hashes(str(FIXTURES / "ladder-video-360.ismv"), "0:v")


def test_backend_sees_only_ranged_reads_of_what_is_needed(remote):
    origin, _, backend = remote
    r = origin.get("/video/proxy/v/progressive-tail.mp4/.mpd")
    assert r.status_code == 200
    seen = backend_requests(backend)
    # A moov at the end of a small file: the first read brings all of it.
    assert len(seen) <= 2, seen
    assert all(re.fullmatch(r"bytes=\d+-\d+", rng) for _, rng, _ in seen), seen
    assert all(status in (200, 206) for _, _, status in seen), seen
    # The client's own headers never reach the backend.
    before = len(backend_requests(backend))
    r = origin.get("/video/proxy/v/ladder.ism/.mpd",
                   headers={"Range": "bytes=0-10", "If-None-Match": "\"x\""})
    assert r.status_code == 206
    for _, rng, status in backend_requests(backend)[before:]:
        assert rng != "bytes=0-10" and status != 304


def test_progressive_download_is_proxied(remote):
    origin, _, _ = remote
    r = origin.get("/video/proxy/v/progressive.mp4")
    assert r.status_code == 200
    assert r.content == (FIXTURES / "progressive.mp4").read_bytes()
    r = origin.get("/video/proxy/v/progressive.mp4", headers={"Range": "bytes=100-199"})
    assert r.status_code == 206 and len(r.content) == 100


def test_missing_and_refused_remote_files(remote):
    origin, _, backend = remote
    assert origin.get("/video/proxy/v/nothing.ism/.mpd").status_code == 404
    assert origin.get("/video/proxy/v/nothing.mp4/.mpd").status_code == 404
    # A source that is missing on the backend.
    text = (backend.root / "storage" / "v" / "ladder.ism").read_text()
    broken = backend.root / "storage" / "v" / "broken.ism"
    broken.write_text(text.replace("ladder-audio-fra.isma", "gone.isma"))
    broken.chmod(0o644)
    r = origin.get("/video/proxy/v/broken.ism/.mpd")
    assert r.status_code == 404
    assert origin.log_lines("gone.isma")
    # The backend refuses a file.
    secret = backend.root / "storage" / "v" / "secret.mp4"
    shutil.copy(FIXTURES / "progressive.mp4", secret)
    secret.chmod(0o600)
    if backend.user_directive() == "":
        r = origin.get("/video/proxy/v/secret.mp4/.mpd")
        assert r.status_code == 403


@pytest.mark.parametrize("src,allowed", [
    ("http://169.254.169.254/latest/meta-data/iam.ismv", False),
    ("http://127.0.0.1:{origin}/video/proxy/v/ladder-video-360.ismv", False),
    ("http://localhost:{backend}/storage/v/ladder-video-360.ismv", False),
    ("http://127.0.0.1:{backend}/other/ladder-video-360.ismv", False),
    ("http://127.0.0.1:{backend}/storage/v/%2e%2e/x.ismv", False),
    ("https://127.0.0.1:{backend}/storage/v/ladder-video-360.ismv", False),
    ("http://127.0.0.1:{backend}/storage/v/ladder-video-360.ismv", True),
])
def test_absolute_source_urls_only_reach_the_backend(remote, src, allowed):
    origin, _, backend = remote
    src = src.format(origin=origin.port, backend=backend.port)
    text = (backend.root / "storage" / "v" / "ladder.ism").read_text()
    ism = backend.root / "storage" / "v" / "abs.ism"
    ism.write_text(text.replace('src="ladder-video-360.ismv"', f'src="{src}"'))
    ism.chmod(0o644)
    assert src in ism.read_text()
    r = origin.get("/video/proxy/v/abs.ism/.mpd")
    if allowed:
        assert r.status_code == 200, r.text
        assert "video=" in r.text
    else:
        assert r.status_code == 403, r.text
        assert origin.log_lines("is refused"), origin.log_text()[-2000:]


def test_absolute_urls_are_refused_for_local_files(make_nginx):
    n = make_nginx()
    media = n.root / "v"
    media.mkdir(mode=0o755)
    shutil.copy(FIXTURES / "ladder-video-360.ismv", media / "ladder-video-360.ismv")
    subprocess.run([str(ISMTOOL), "create", "-o", str(media / "a.ism"),
                    str(media / "ladder-video-360.ismv")], check=True, capture_output=True)
    ism = media / "a.ism"
    ism.write_text(ism.read_text().replace('src="ladder-video-360.ismv"',
                                           'src="http://169.254.169.254/x.ismv"'))
    for p in media.iterdir():
        p.chmod(0o644)
    n.start(r"location ~ \.ism(/|$) { usp_handle_ism; }")
    r = n.get("/v/a.ism/.mpd")
    assert r.status_code == 403
    assert n.log_lines("169.254.169.254")


def test_the_proxy_pass_example_works_as_written(make_nginx):
    """nginx-conf/proxy-pass.conf (the README's ism_proxy_pass configuration), with only the
    backend's address changed."""
    backend = make_nginx()
    publish(backend.root / "v")
    log = backend.prefix / "logs" / "connections.log"
    backend.start(f"access_log {log} conns;", http_extra="log_format conns '$connection';")
    origin = make_nginx()
    example = ROOT / "nginx-conf" / "proxy-pass.conf"
    origin.start_config(origin.example_config(
        example, {"127.0.0.1:8080": f"127.0.0.1:{backend.port}"}))
    got = frame_hashes(origin.url("/video/proxy/v/ladder.ism/.mpd"), "0:v:0")
    assert got == frame_hashes(str(FIXTURES / "ladder-video-360.ismv"), "0:v")
    # The example's upstream keepalive: the reads share connections.
    for _ in range(3):
        assert origin.get("/video/proxy/v/mp4s.ism/.m3u8").status_code == 200
    reads = log.read_text().split()
    assert len(reads) > 5 and len(set(reads)) < len(reads) / 2, reads


def padded(name: str, pad: int) -> bytes:
    """A fixture with `pad` zero bytes added at the end of its mdat (sample offsets unchanged):
    large enough that its head and a moov at its end are far apart."""
    data = (FIXTURES / name).read_bytes()
    out, at = bytearray(), 0
    while at < len(data):
        size = int.from_bytes(data[at:at + 4], "big")
        if data[at + 4:at + 8] == b"mdat":
            out += (size + pad).to_bytes(4, "big") + data[at + 4:at + size] + bytes(pad)
        else:
            out += data[at:at + size]
        at += size
    return bytes(out)


def test_storage_requests_per_manifest_and_segment(make_nginx):
    """The request counts docs/BENCHMARKS.md gives, counted at the backend: a first manifest of
    a faststart MP4 costs one read, of an MP4 with its moov at the end two (never a read of the
    media between); a warm manifest none; a segment one ranged read of its samples."""
    backend = make_nginx()
    media = backend.root / "storage"
    media.mkdir(mode=0o755)
    for name, src in [("fast.mp4", "progressive.mp4"), ("tail.mp4", "progressive-tail.mp4")]:
        (media / name).write_bytes(padded(src, 32 << 20))
        (media / name).chmod(0o644)
    backend.start(f"access_log {backend.prefix}/logs/backend.log ranges;", http_extra=BACKEND_LOG)
    origin = make_nginx().start(f"""
        location ^~ /p/ {{
            usp_handle_ism;
            ism_proxy_pass http://127.0.0.1:{backend.port}/storage/;
        }}""")

    def count(path: str) -> list[tuple[str, str, int]]:
        before = len(backend_requests(backend))
        r = origin.get(path)
        assert r.status_code == 200, origin.log_text()[-2000:]
        return backend_requests(backend)[before:]

    first = count("/p/fast.mp4/.mpd")
    assert len(first) == 1, first
    first = count("/p/tail.mp4/.mpd")
    assert len(first) == 2, first
    fetched = sum(int(rng.split("-")[1]) - int(rng.split("=")[1].split("-")[0]) + 1
                  for _, rng, _ in first)
    assert fetched < 1 << 20, first
    for entry in [".mpd", ".m3u8", "Manifest"]:
        assert count(f"/p/tail.mp4/{entry}") == [], entry
    mpd = origin.get("/p/tail.mp4/.mpd").text
    rep = mpd.split('<Representation id="')[1].split('"')[0]
    seg = count(f"/p/tail.mp4/dash/tail-{rep}-0.dash")
    assert len(seg) == 1 and seg[0][1].startswith("bytes="), seg
    # A TS I-frame playlist sizes each key frame from the index (4-byte NAL lengths): no
    # read at all, where it once read every key frame. Its byte ranges are the segments'.
    master = origin.get("/p/tail.mp4/.m3u8").text
    iframes = "/p/tail.mp4/" + re.search(r'URI="(keyframes/[^"]+)"', master).group(1)
    assert count(iframes) == []
    playlist = origin.get(iframes).text
    ranges = re.findall(r"#EXT-X-BYTERANGE:(\d+)@0\n\.\./(\S+)", playlist)
    assert len(ranges) >= 2
    for length, segment in ranges:
        ts = origin.get(f"/p/tail.mp4/{segment}").content
        key_frame = ts[:int(length)]
        # PAT, PMT, then the key frame's PES: whole packets, the video PID's last one the end
        # of that PES (the next packet starts another PES or the segment ends).
        assert len(key_frame) % 188 == 0 and key_frame[188 * 2 + 1] & 0x40, segment
        rest = ts[int(length):]
        assert not rest or rest[1] & 0x40 or rest[1] & 0x1f == 0x1f, segment


def test_the_proxy_cache_example_reads_the_storage_once(make_nginx):
    """nginx-conf/proxy-cache.conf: with proxy_cache between origin and storage, a second
    origin (or a restarted one) serves from the cache without a single storage request."""
    backend = make_nginx()
    publish(backend.root / "v")
    backend.start(f"access_log {backend.prefix}/logs/backend.log ranges;", http_extra=BACKEND_LOG)
    example = ROOT / "nginx-conf" / "proxy-cache.conf"
    cache = backend.prefix / "origin-cache"
    cache.mkdir(mode=0o777)
    replace = {"127.0.0.1:8080": f"127.0.0.1:{backend.port}",
               "/var/cache/nginx/origin": str(cache)}
    first = make_nginx()
    first.start_config(first.example_config(example, replace))
    urls = dash_urls(get_ok(first), first.url("/video/proxy/v/ladder.ism/.mpd"))
    bodies = {u.split(f":{first.port}", 1)[1]: get_ok(first)(u).content for u in urls}
    reads = len(backend_requests(backend))
    assert reads > 0
    # Ranged reads were cached as such: the backend saw each range once, one range a read.
    seen = backend_requests(backend)
    assert all(re.fullmatch(r"bytes=\d+-\d+", rng) for _, rng, _ in seen), seen
    assert len({(u, rng) for u, rng, _ in seen}) == len(seen), seen
    first.stop()
    second = make_nginx()
    second.start_config(second.example_config(example, replace))
    for path, body in bodies.items():
        r = second.get(path)
        assert r.status_code == 200 and r.content == body, path
    assert len(backend_requests(backend)) == reads


def test_object_versions_are_trusted_for_the_ttl_then_revalidated(make_nginx):
    """`origin_remote_ttl`: within it a manifest makes no backend request; after it each file
    is revalidated with a one-byte read, and nothing is read again while it is unchanged."""
    backend = make_nginx()
    publish(backend.root / "v")
    backend.start(f"access_log {backend.prefix}/logs/backend.log ranges;", http_extra=BACKEND_LOG)
    origin = make_nginx().start(f"""
        location ^~ /p/ {{
            usp_handle_ism;
            ism_proxy_pass http://127.0.0.1:{backend.port}/;
            origin_remote_ttl 1s;
        }}""")
    assert origin.get("/p/v/mp4s.ism/.mpd").status_code == 200
    first = len(backend_requests(backend))
    assert origin.get("/p/v/mp4s.ism/.m3u8").status_code == 200
    assert len(backend_requests(backend)) == first
    time.sleep(1.5)
    assert origin.get("/p/v/mp4s.ism/.mpd").status_code == 200
    again = backend_requests(backend)[first:]
    # The server manifest and its two sources, one byte each.
    assert sorted(u for u, _, _ in again) == sorted(
        ["/v/mp4s.ism", "/v/ladder-video-360.mp4", "/v/ladder-audio-eng.mp4"]), again
    assert all(rng == "bytes=0-0" for _, rng, _ in again), again


def test_backend_over_tls(make_nginx, tmp_path):
    """An https:// `ism_proxy_pass`: the proxy module's TLS, with its `proxy_ssl_*` directives
    (here verifying the backend's certificate against its own CA file)."""
    cert, key = self_signed_cert(tmp_path)
    backend = make_nginx(tls=(cert, key))
    publish(backend.root / "v")
    backend.start("")
    origin = make_nginx().start(f"""
        location ^~ /tls/ {{
            usp_handle_ism;
            ism_proxy_pass https://127.0.0.1:{backend.ssl_port}/;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate {cert};
            proxy_ssl_name localhost;
        }}""")
    got = frame_hashes(origin.url("/tls/v/ladder.ism/.mpd"), "0:v:0")
    assert got == frame_hashes(str(FIXTURES / "ladder-video-360.ismv"), "0:v")
    # A certificate the origin does not trust is a backend failure, not media.
    other_ca, _ = self_signed_cert(tmp_path / "other")
    untrusting = make_nginx().start(f"""
        location ^~ /tls/ {{
            usp_handle_ism;
            ism_proxy_pass https://127.0.0.1:{backend.ssl_port}/;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate {other_ca};
            proxy_ssl_name localhost;
        }}""")
    assert untrusting.get("/tls/v/ladder.ism/.mpd").status_code == 502


def test_sources_climbing_with_dotdot_stay_below_the_location(remote):
    """A `src` with `..` is read through the location as long as it stays below its prefix
    (which is all ism_proxy_pass maps to the backend); one that climbs out is refused with 403."""
    origin, local, backend = remote
    storage = backend.root / "storage" / "v"
    titles = storage / "titles"
    titles.mkdir(mode=0o755)
    text = (storage / "ladder.ism").read_text()
    (titles / "t.ism").write_text(text.replace('src="ladder-', 'src="../ladder-'))
    (storage / "esc.ism").write_text(text.replace('src="ladder-audio-eng.isma"',
                                                  'src="../../../storage/v/ladder-audio-eng.isma"'))
    for p in [titles / "t.ism", storage / "esc.ism", titles]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    climbed = origin.get("/video/proxy/v/titles/t.ism/.mpd")
    assert climbed.status_code == 200, climbed.text
    assert climbed.content == local.get("/v/ladder.ism/.mpd").content.replace(b"ladder", b"t")
    escaped = origin.get("/video/proxy/v/esc.ism/.mpd")
    assert escaped.status_code == 403 and escaped.headers["X-Origin-Error"] == "SOURCE_REFUSED"
    assert origin.log_lines("leads outside the location's root")


def test_the_reference_ism_proxy_pass_snippet_works_as_written(make_nginx):
    """The reference module's documentation configures a remote location with `ism_proxy_pass`
    alone; that location hands its `.ism` URLs to the module (with `usp_handle_ism` beside it
    still accepted, as every other test here writes it)."""
    backend = make_nginx()
    publish(backend.root / "v")
    backend.start("")
    origin = make_nginx()
    origin.start("""
        location ^~ /video/proxy/ { ism_proxy_pass http://other-server/; }""",
                 http_extra=f"upstream other-server {{ server 127.0.0.1:{backend.port}; }}")
    r = origin.get("/video/proxy/v/ladder.ism/.mpd")
    assert r.status_code == 200, origin.log_text()[-2000:]
    got = frame_hashes(origin.url("/video/proxy/v/ladder.ism/.m3u8"), "0:v:0")
    assert got == frame_hashes(str(FIXTURES / "ladder-video-360.ismv"), "0:v")
    r = origin.get("/video/proxy/v/progressive.mp4", headers={"Range": "bytes=0-99"})
    assert r.status_code == 206 and r.content == (FIXTURES / "progressive.mp4").read_bytes()[:100]


def test_a_server_manifest_is_never_sent_from_a_remote_location(remote):
    """The `.ism` itself (which can hold content keys) answers 404 through ism_proxy_pass, as
    it does for local files; its packaged forms are served."""
    origin, local, _ = remote
    for path in ["/v/ladder.ism", "/v/ladder.ism/"]:
        assert local.get(path).status_code == 404
        r = origin.get("/video/proxy" + path)
        assert r.status_code == 404 and b"<smil" not in r.content, path
        assert r.headers["X-Origin-Error"] == "UNKNOWN_VIRTUAL_PATH"
        assert origin.head("/video/proxy" + path).status_code == 404
    assert origin.get("/video/proxy/v/ladder.ism/.mpd").status_code == 200


def test_usp_handle_f4f_holds_for_remote_files(make_nginx):
    """HDS comes from a remote location only where usp_handle_f4f is on, as for local files."""
    backend = make_nginx()
    publish(backend.root / "v")
    backend.start("")
    origin = make_nginx().start(f"""
        location ^~ /off/ {{
            usp_handle_ism;
            ism_proxy_pass http://127.0.0.1:{backend.port}/;
        }}
        location ^~ /on/ {{
            usp_handle_ism;
            usp_handle_f4f;
            ism_proxy_pass http://127.0.0.1:{backend.port}/;
        }}""")
    r = origin.get("/off/v/ladder.ism/ladder.f4m")
    assert r.status_code == 404 and r.headers["X-Origin-Error"] == "UNKNOWN_VIRTUAL_PATH"
    assert origin.get("/on/v/ladder.ism/ladder.f4m").status_code == 200
