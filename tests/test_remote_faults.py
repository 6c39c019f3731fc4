"""Remote sources against a backend that misbehaves (tests/faulty_backend.py): every fault is a
clear 403/404/502/504, never corrupt media, never a crash; a slow backend never stalls the other
requests of the worker; and the worker serves normally afterwards."""

import concurrent.futures

import pytest
import requests

from faulty_backend import FaultyBackend
from harness import wait_for
from helpers.remote import publish


@pytest.fixture
def faulty(make_nginx, tmp_path):
    root = tmp_path / "files"
    publish(root / "v")
    with FaultyBackend(root, delay=3.0) as backend:
        origin = make_nginx()
        origin.start(f"""
            location ^~ /f/ {{
                usp_handle_ism;
                ism_proxy_pass http://127.0.0.1:{backend.port}/;
                proxy_read_timeout 1s;
                proxy_connect_timeout 1s;
            }}""")
        yield origin, backend


def get(origin, path, **kw):
    return requests.get(origin.url(path), timeout=30, **kw)


@pytest.mark.parametrize("mode,status", [
    ("503", 502),
    ("reset", 502),
    ("short", 502),
    ("long", 502),
    ("badrange", 502),
    ("norange", 502),
    ("redirect", 502),
    ("slow", 504),
])
def test_faults_are_clear_errors(faulty, mode, status):
    origin, backend = faulty
    r = get(origin, f"/f/{mode}/v/ladder.ism/.mpd")
    assert r.status_code == status, r.text
    assert origin.log_lines(f"/{mode}/v/"), origin.log_text()[-3000:]
    # The worker is fine: the same file through a well-behaved path.
    ok = get(origin, "/f/ok/v/ladder.ism/.mpd")
    assert ok.status_code == 200
    assert not origin.crashes()


def test_server_errors_and_resets_are_retried_once(faulty):
    origin, backend = faulty
    before = backend.count("503")
    assert get(origin, "/f/503/v/ladder.ism/.mpd").status_code == 502
    # The manifest was asked for twice: the first try and one retry, no more.
    assert backend.count("503") - before == 2
    before = backend.count("reset")
    assert get(origin, "/f/reset/v/ladder.ism/.mpd").status_code == 502
    assert backend.count("reset") - before == 2
    # A backend that fails once is served on the retry.
    r = get(origin, "/f/503once/v/ladder.ism/.mpd")
    assert r.status_code == 200, r.text
    assert "<MPD" in r.text


def test_missing_objects_are_404(faulty):
    origin, _ = faulty
    assert get(origin, "/f/ok/v/nothing.ism/.mpd").status_code == 404


def test_an_object_changing_between_reads_is_502(faulty):
    origin, backend = faulty
    # Each response states a new ETag. The MPD request indexes the file from its first read;
    # the segment request then reads the segment's samples, whose ETag is not the indexed one.
    r = get(origin, "/f/etag/v/progressive-tail.mp4/.mpd")
    assert r.status_code == 200
    rep = r.text.split('<Representation id="')[1].split('"')[0]
    seg = get(origin, f"/f/etag/v/progressive-tail.mp4/dash/progressive-tail-{rep}-0.dash")
    assert seg.status_code == 502
    assert origin.log_lines("changed between reads")
    # The same file from a backend that keeps its ETag is served.
    ok = get(origin, f"/f/ok/v/progressive-tail.mp4/dash/progressive-tail-{rep}-0.dash")
    assert ok.status_code == 200
    assert not origin.crashes()


def test_a_slow_backend_does_not_stall_other_requests(faulty):
    origin, backend = faulty
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        slow = [pool.submit(get, origin, "/f/slow/v/ladder.ism/.mpd") for _ in range(4)]
        wait_for(lambda: backend.count("slow"), what="a slow fetch at the backend")
        fast = get(origin, "/f/ok/v/ladder.ism/.m3u8")
        assert fast.status_code == 200
        # Answered while the slow fetches were still waiting for their backend.
        assert not all(f.done() for f in slow)
        assert [f.result().status_code for f in slow] == [504] * 4


@pytest.mark.parametrize("mode", ["huge", "endless", "endlesschunked"])
def test_a_body_over_the_fetch_limit_is_a_502_with_its_token(make_nginx, tmp_path, mode):
    """A stated Content-Length of a terabyte, or a body (plain or chunked) that never ends: the
    read is cut at its buffer and the client gets a 502 with BACKEND_ERROR, counted by the
    status endpoint and remapped by origin_status_map, never a connection closed with no
    status line."""
    root = tmp_path / "files"
    publish(root / "v")
    with FaultyBackend(root) as backend:
        origin = make_nginx().start(f"""
            location ^~ /f/ {{
                usp_handle_ism;
                ism_proxy_pass http://127.0.0.1:{backend.port}/;
                proxy_read_timeout 5s;
            }}
            location ^~ /mapped/ {{
                usp_handle_ism;
                ism_proxy_pass http://127.0.0.1:{backend.port}/;
                origin_status_map 502 503 BACKEND_ERROR;
            }}
            location = /status {{ origin_status; }}""")
        r = get(origin, f"/f/{mode}/v/ladder.ism/.mpd")
        assert r.status_code == 502, r.text
        assert r.headers["X-Origin-Error"] == "BACKEND_ERROR"
        line = origin.log_lines(f"http://127.0.0.1:{backend.port}/{mode}/v/ladder.ism: ")
        assert line and "[error]" in line[0] and "a body over the" in line[0], origin.log_text()
        r = get(origin, f"/mapped/{mode}/v/ladder.ism/.mpd")
        assert r.status_code == 503 and r.headers["X-Origin-Error"] == "BACKEND_ERROR"
        counts = origin.get("/status").json()
        assert counts["errors"]["BACKEND_ERROR"] == 2
        assert counts["requests"]["by_status"]["502"]["requests"] == 1
        # The worker serves on, and the next read of the same backend is not disturbed.
        assert get(origin, "/f/ok/v/ladder.ism/.mpd").status_code == 200
        assert not origin.crashes()


def test_error_lines_name_the_url_that_was_read(faulty):
    """The URL in an error line is the one the proxy requested: the location's prefix replaced
    by the ism_proxy_pass path, joined with one slash."""
    origin, backend = faulty
    assert get(origin, "/f/503/v/ladder.ism/.mpd").status_code == 502
    wanted = f"ngx_origin: http://127.0.0.1:{backend.port}/503/v/ladder.ism: status 503"
    assert origin.log_lines(wanted), origin.log_text()[-2000:]
    assert not origin.log_lines(f"{backend.port}//"), origin.log_text()[-2000:]
