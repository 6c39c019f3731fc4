"""S3 sources: `ism_proxy_pass` to a real S3 server that checks every SigV4 signature
(s3s-fs), with `s3_access_key` / `s3_secret_key` / `s3_region`. Every URL a player fetches gives
the same bytes as from local files, and a wrong secret is a clear 403, never a 500."""

import shutil

import pytest

from harness import ROOT
from helpers.media import FIXTURES, frame_hashes
from helpers.remote import (ACCESS_KEY, SECRET_KEY, assert_same_as_local, dash_urls, hls_urls,
                            publish, s3s_fs, smooth_urls)


@pytest.fixture
def s3(tmp_path):
    """A running s3s-fs holding the media set in bucket `media`, under `v/`."""
    data = tmp_path / "s3"
    publish(data / "media" / "v")
    with s3s_fs(data, ACCESS_KEY, SECRET_KEY) as port:
        yield port, data


def location(port: int, secret: str = SECRET_KEY, extra: str = "") -> str:
    return f"""
        location ^~ /s3/ {{
            usp_handle_ism;
            ism_proxy_pass http://127.0.0.1:{port}/media/;
            s3_access_key {ACCESS_KEY};
            s3_secret_key {secret};
            s3_region us-east-1;
            {extra}
        }}"""


@pytest.fixture
def origins(make_nginx, s3):
    port, _ = s3
    origin = make_nginx().start(location(port))
    local = make_nginx()
    publish(local.root / "v")
    local.start(r"location ~ \.(ism|isml|mp4)(/|$) { usp_handle_ism; }")
    return origin, local


@pytest.mark.parametrize("ism,entry,crawl", [
    ("ladder.ism", ".mpd", dash_urls),
    ("ladder.ism", ".m3u8", hls_urls),
    ("ladder.ism", ".m3u8?hls_fmp4", hls_urls),
    ("ladder.ism", "Manifest", smooth_urls),
    ("mp4s.ism", ".mpd", dash_urls),
    ("progressive-tail.mp4", ".m3u8", hls_urls),
])
def test_every_url_from_s3_is_byte_identical_to_local(origins, ism, entry, crawl):
    origin, local = origins
    assert_same_as_local(origin, "/s3", local, f"/v/{ism}/{entry}", crawl)


def test_s3_sources_are_frame_exact(origins):
    origin, _ = origins
    got = frame_hashes(origin.url("/s3/v/ladder.ism/.mpd"), "0:v:2")
    assert got == frame_hashes(str(FIXTURES / "ladder-video-720.ismv"), "0:v")


def test_wrong_secret_is_a_clear_403(make_nginx, s3):
    port, _ = s3
    origin = make_nginx().start(location(port, secret="not/the+secret"))
    r = origin.get("/s3/v/ladder.ism/.mpd")
    assert r.status_code == 403
    assert r.headers["X-Origin-Error"] == "FORBIDDEN"
    # The client sees 403; the operator sees an error line (the origin's own credentials are
    # wrong), naming the URL signed and sent: the bucket's path, not the location's.
    lines = origin.log_lines(f"http://127.0.0.1:{port}/media/v/ladder.ism: permission denied")
    assert lines and all("[error]" in line for line in lines), origin.log_text()[-2000:]
    assert not origin.log_lines("/media//"), origin.log_text()[-2000:]
    assert not origin.crashes()


def test_progressive_downloads_from_s3_are_signed(origins):
    """A progressive download of an `.mp4` goes to S3 signed, as every read of its packaging
    does: whole, in ranges, and with the client's query left out (S3 would take it for an
    operation on the object, made with the origin's credentials)."""
    origin, _ = origins
    whole = (FIXTURES / "progressive.mp4").read_bytes()
    r = origin.get("/s3/v/progressive.mp4")
    assert r.status_code == 200, r.text[:500]
    assert r.content == whole
    r = origin.get("/s3/v/progressive.mp4", headers={"Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == whole[100:200]
    r = origin.get("/s3/v/progressive.mp4?acl", headers={"Range": "bytes=0-9"})
    assert r.status_code == 206 and r.content == whole[:10]
    r = origin.head("/s3/v/progressive.mp4")
    assert r.status_code == 200 and int(r.headers["Content-Length"]) == len(whole)
    assert origin.get("/s3/v/none.mp4").status_code == 404


def test_missing_object_is_404(origins):
    origin, _ = origins
    assert origin.get("/s3/v/none.ism/.mpd").status_code == 404
    assert origin.get("/s3/v/none.mp4/.m3u8").status_code == 404


def test_odd_object_names_are_signed_as_sent(make_nginx, s3):
    port, data = s3
    odd = data / "media" / "v" / "odd name (1).mp4"
    shutil.copy(FIXTURES / "progressive.mp4", odd)
    odd.chmod(0o644)
    origin = make_nginx().start(location(port))
    r = origin.get("/s3/v/odd%20name%20(1).mp4/.mpd")
    assert r.status_code == 200, origin.log_text()[-2000:]


def test_the_s3_example_works_as_written(make_nginx, tmp_path):
    """nginx-conf/s3.conf (the README's S3 configuration), with only the S3 server's port
    changed: its credentials, region and bucket are the ones written there."""
    example = ROOT / "nginx-conf" / "s3.conf"
    text = example.read_text()
    access = text.split("s3_access_key ")[1].split(";")[0]
    secret = text.split("s3_secret_key ")[1].split(";")[0]
    data = tmp_path / "s3"
    publish(data / "my-bucket" / "v")
    with s3s_fs(data, access, secret) as port:
        origin = make_nginx()
        origin.start_config(origin.example_config(example, {"127.0.0.1:9000": f"127.0.0.1:{port}"}))
        r = origin.get("/s3/v/ladder.ism/.mpd")
        assert r.status_code == 200, origin.log_text()[-2000:]
        got = frame_hashes(origin.url("/s3/v/ladder.ism/.m3u8?hls_fmp4"), "0:a:0")
        assert got == frame_hashes(str(FIXTURES / "ladder-audio-eng.isma"), "0:a")


def test_virtual_hosted_bucket(make_nginx, tmp_path):
    """The bucket in the host name (`media.s3.test`), as Amazon S3 names buckets: the signed
    Host is the one nginx sends, and the server finds the bucket from it."""
    data = tmp_path / "s3"
    publish(data / "media" / "v")
    with s3s_fs(data, ACCESS_KEY, SECRET_KEY, domain="s3.test") as port:
        origin = make_nginx().start(f"""
            location ^~ /s3/ {{
                usp_handle_ism;
                ism_proxy_pass http://media.s3.test/;
                s3_access_key {ACCESS_KEY};
                s3_secret_key {SECRET_KEY};
                s3_region us-east-1;
            }}""", http_extra=f"upstream media.s3.test {{ server 127.0.0.1:{port}; }}")
        r = origin.get("/s3/v/ladder.ism/.mpd")
        assert r.status_code == 200, origin.log_text()[-2000:]
        got = frame_hashes(origin.url("/s3/v/ladder.ism/.mpd"), "0:v:0")
        assert got == frame_hashes(str(FIXTURES / "ladder-video-360.ismv"), "0:v")
