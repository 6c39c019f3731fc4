"""Progressive MP4 through the module: full body, HEAD, Range, ETag / Last-Modified and 304."""

import hashlib
import shutil
from email.utils import parsedate_to_datetime

import pytest

from harness import ROOT

FIXTURE = ROOT / "tests" / "fixtures" / "progressive.mp4"


@pytest.fixture
def origin(make_nginx):
    n = make_nginx()
    (n.root / "v").mkdir(mode=0o755)
    shutil.copy(FIXTURE, n.root / "v" / "a.mp4")
    (n.root / "v" / "a.mp4").chmod(0o644)
    return n.start(r"location ~ \.mp4(/.*)?$ { usp_handle_ism; }")


def test_full_body(origin):
    data = FIXTURE.read_bytes()
    r = origin.get("/v/a.mp4")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "video/mp4"
    assert int(r.headers["Content-Length"]) == len(data)
    assert hashlib.sha256(r.content).digest() == hashlib.sha256(data).digest()
    assert r.headers["Accept-Ranges"] == "bytes"
    assert parsedate_to_datetime(r.headers["Last-Modified"])
    assert r.headers["ETag"]


def test_head(origin):
    r = origin.head("/v/a.mp4")
    assert r.status_code == 200
    assert int(r.headers["Content-Length"]) == FIXTURE.stat().st_size
    assert r.content == b""


def test_ranges(origin):
    data = FIXTURE.read_bytes()
    r = origin.get("/v/a.mp4", headers={"Range": "bytes=100-199"})
    assert r.status_code == 206
    assert r.content == data[100:200]
    assert r.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    r = origin.get("/v/a.mp4", headers={"Range": "bytes=-10"})
    assert r.content == data[-10:]
    r = origin.get("/v/a.mp4", headers={"Range": f"bytes={len(data) + 10}-"})
    assert r.status_code == 416


def test_conditional(origin):
    r = origin.get("/v/a.mp4")
    etag, modified = r.headers["ETag"], r.headers["Last-Modified"]
    assert origin.get("/v/a.mp4", headers={"If-None-Match": etag}).status_code == 304
    assert origin.get("/v/a.mp4", headers={"If-Modified-Since": modified}).status_code == 304
    assert origin.get("/v/a.mp4", headers={"If-None-Match": '"other"'}).status_code == 200
