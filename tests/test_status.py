"""The status endpoint (`origin_status`): counters summed over every worker from shared memory,
as JSON and as Prometheus text, checked exactly against what clients received.

Bytes are nginx's `$bytes_sent`: everything sent for a response, status line and headers
included. Over HTTP/1.1 that is exactly what a raw client reads for it, so every request here
goes through a raw socket that reads each response to its last byte."""

import json
import os
import re
import signal
import socket
import time
from collections import Counter, defaultdict

import pytest

from harness import ROOT
from helpers.media import media_dir

LADDER = ["ladder-video-360.ismv", "ladder-audio-eng.isma"]
CHANNEL = b'<smil xmlns="http://www.w3.org/2001/SMIL20/Language"><head/><body/></smil>'


class Reply:
    def __init__(self, raw: bytes, head: bytes):
        self.raw = raw
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ", 2)[1])
        self.headers = {}
        for line in lines[1:]:
            if line:
                name, value = line.split(":", 1)
                self.headers[name.strip().lower()] = value.strip()
        self.body = raw[len(head) + 4:]


def read_reply(s: socket.socket, buf: bytearray, head_only: bool) -> Reply:
    """One response from `s` (bytes already read in `buf`), read to its last byte by its
    Content-Length, or to the end of the connection without one."""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        assert chunk, f"connection closed inside a header: {bytes(buf)!r}"
        buf += chunk
    head = bytes(buf[:buf.index(b"\r\n\r\n")])
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    if head_only or length is None and re.match(rb"HTTP/1\.1 (304|204)", head):
        want = len(head) + 4
    elif length is not None:
        want = len(head) + 4 + int(length.group(1))
    else:
        while chunk := s.recv(65536):
            buf += chunk
        want = len(buf)
    while len(buf) < want:
        chunk = s.recv(65536)
        assert chunk, "connection closed inside a body"
        buf += chunk
    raw = bytes(buf[:want])
    del buf[:want]
    return Reply(raw, head)


def exchange(n, requests_: list[tuple[str, str, bytes]], source: str = "127.0.0.1") -> list[Reply]:
    """Sends (method, path, body) requests one after the other on one keep-alive connection
    (one worker serves them all) and returns the replies, the last with Connection: close."""
    replies = []
    with socket.create_connection(("127.0.0.1", n.port), timeout=30,
                                  source_address=(source, 0)) as s:
        buf = bytearray()
        for i, (method, path, body) in enumerate(requests_):
            close = "close" if i == len(requests_) - 1 else "keep-alive"
            s.sendall(f"{method} {path} HTTP/1.1\r\nHost: origin\r\nConnection: {close}\r\n"
                      f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            replies.append(read_reply(s, buf, head_only=method == "HEAD"))
        assert not s.recv(1), "bytes after the last response"
    return replies


def one(n, method: str, path: str, body: bytes = b"", source: str = "127.0.0.1") -> Reply:
    return exchange(n, [(method, path, body)], source)[0]


def status_json(n, source: str = "127.0.0.1") -> tuple[dict, Reply]:
    r = one(n, "GET", "/status", source=source)
    assert r.status == 200, r.raw
    return json.loads(r.body), r


def parse_prometheus(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a Prometheus text exposition; fails on any line that is neither a
    `# HELP` / `# TYPE` comment nor `name{labels} value`."""
    samples = {}
    families = set()
    for line in text.splitlines():
        if m := re.fullmatch(r"# (HELP|TYPE) (ngx_origin_[a-z_]+) (.+)", line):
            if m.group(1) == "TYPE":
                assert m.group(3) in ("counter", "gauge"), line
                assert m.group(2) not in families, f"family declared twice: {line}"
                families.add(m.group(2))
            continue
        m = re.fullmatch(r'(ngx_origin_[a-z_]+)(?:\{((?:[a-z]+="[^"]*",?)*)\})? (\S+)', line)
        assert m, f"not a Prometheus line: {line!r}"
        labels = tuple(sorted(re.findall(r'([a-z]+)="([^"]*)"', m.group(2) or "")))
        assert m.group(1) in families, f"a sample before its # TYPE: {line}"
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples


@pytest.fixture
def origin(make_nginx):
    """Two workers, each taking connections of its own (reuseport: the kernel spreads
    connections over the workers by address and port). Every answer says which worker made it."""
    n = make_nginx(workers=2)
    media_dir(n, LADDER + ["progressive.mp4"], {"ladder.ism": LADDER, "again.ism": LADDER})
    channels = n.root / "channels"
    channels.mkdir()
    channels.chmod(0o777)
    server = r"""
        add_header X-Worker $pid always;
        location ~ \.(ism|mp4)(/|$) { usp_handle_ism; }
        location /channels/ { usp_handle_ism; usp_handle_api; client_max_body_size 0; }
        location = /status { origin_status; }
    """
    text = n.config(server).replace(f"listen 127.0.0.1:{n.port};",
                                    f"listen 127.0.0.1:{n.port} reuseport;")
    return n.start_config(text)


# What the workload asks for: (method, path, body, the format it is counted under).
WORKLOAD = [
    ("GET", "/v/ladder.ism/Manifest", b"", "smooth"),
    ("GET", "/v/ladder.ism/.mpd", b"", "dash"),
    ("HEAD", "/v/ladder.ism/.mpd", b"", "dash"),
    ("GET", "/v/ladder.ism/.m3u8", b"", "hls"),
    ("GET", "/v/ladder.ism/.mpd?vbegin=2020-01-01T00:00:00Z", b"", "dash"),
    ("GET", "/v/progressive.mp4", b"", "progressive"),
    ("GET", "/v/progressive.mp4/.mpd", b"", "dash"),
    ("GET", "/v/ladder.ism/no-such-thing", b"", "other"),
    ("GET", "/v/missing.ism/.mpd", b"", "dash"),
    ("POST", "/v/ladder.ism/.mpd", b"x", "dash"),
    ("PUT", "/channels/ch.isml", CHANNEL, "live-api"),
    ("GET", "/channels/ch.isml/state", b"", "live-api"),
    ("POST", "/channels/ch.isml/Streams(s1)", b"\0\0\0\x10junkjunkjunk", "live-ingest"),
]


def test_totals_over_two_workers_are_exact(origin):
    n = origin
    expected = defaultdict(lambda: [0, 0])  # (format, status) -> [requests, bytes]
    errors = Counter()
    workers = set()
    # The workload three times over, each request on a connection of its own, until both
    # workers have served some of it.
    rounds = 0
    while rounds < 3 or len(workers) < 2:
        rounds += 1
        assert rounds < 40, f"one worker took every connection: {workers}"
        for method, path, body, fmt in WORKLOAD:
            r = one(n, method, path, body)
            workers.add(r.headers["x-worker"])
            key = (fmt, r.status)
            expected[key][0] += 1
            expected[key][1] += len(r.raw)
            if "x-origin-error" in r.headers:
                errors[r.headers["x-origin-error"]] += 1
    statuses = {status for _, status in expected}
    assert {200, 201, 400, 404, 405} <= statuses, expected
    assert {"UNKNOWN_VIRTUAL_PATH", "NOT_FOUND", "METHOD_NOT_ALLOWED", "BAD_QUERY"} <= set(errors)

    doc, reply = status_json(n)
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["cache-control"] == "no-store"
    got = {(fmt, int(status)): [v["requests"], v["bytes"]]
           for fmt, by_status in doc["requests"]["by_format_and_status"].items()
           for status, v in by_status.items()}
    assert got == dict(expected)
    total = [sum(v[0] for v in expected.values()), sum(v[1] for v in expected.values())]
    assert [doc["requests"]["total"]["requests"], doc["requests"]["total"]["bytes"]] == total
    for fmt, v in doc["requests"]["by_format"].items():
        assert [v["requests"], v["bytes"]] == [
            sum(c[0] for (f, _), c in expected.items() if f == fmt),
            sum(c[1] for (f, _), c in expected.items() if f == fmt)], fmt
    assert set(doc["requests"]["by_format"]) == {
        "smooth", "dash", "hls", "hds", "progressive", "live-ingest", "live-api", "other"}
    for status, v in doc["requests"]["by_status"].items():
        assert v["requests"] == sum(c[0] for (_, s), c in expected.items() if s == int(status))
    assert {t: c for t, c in doc["errors"].items() if c} == dict(errors)
    assert "INTERNAL" in doc["errors"]  # every token is listed, counted or not

    assert doc["workers"] == 2
    assert doc["index_builds"]["count"] >= 1 and doc["index_builds"]["seconds"] > 0
    indexes = doc["caches"]["media_indexes"]
    assert indexes["entries"] >= 1 and indexes["bytes"] > 0 and indexes["misses"] >= 1

    # Any worker answers with the same totals: the status requests themselves count nowhere.
    answered = {}
    for _ in range(60):
        other, r = status_json(n)
        answered[r.headers["x-worker"]] = other
        if len(answered) == 2:
            break
    assert len(answered) == 2
    for other in answered.values():
        assert other == doc


def test_a_manifest_asked_twice_of_one_worker_is_a_cache_hit(origin):
    n = origin
    before, _ = status_json(n)
    # One connection: one worker, whose caches have not seen again.ism yet.
    replies = exchange(n, [("GET", "/v/again.ism/.m3u8", b""), ("GET", "/v/again.ism/.m3u8", b"")])
    assert [r.status for r in replies] == [200, 200] and replies[0].body == replies[1].body
    after, _ = status_json(n)

    def gained(cache, field):
        return after["caches"][cache][field] - before["caches"][cache][field]

    assert (gained("generated_manifests", "misses"), gained("generated_manifests", "hits")) == (1, 1)
    assert gained("generated_manifests", "entries") == 1
    assert gained("server_manifests", "misses") == 1
    assert gained("generated_manifests", "evictions") == 0
    assert after["requests"]["by_format"]["hls"]["requests"] == \
        before["requests"]["by_format"]["hls"]["requests"] + 2
    assert after["requests"]["by_format"]["hls"]["bytes"] == \
        before["requests"]["by_format"]["hls"]["bytes"] + sum(len(r.raw) for r in replies)
    # The sources: indexed by this worker now (a build), or earlier (a hit); either way the
    # builder's time is counted with every build.
    builds = after["index_builds"]["count"] - before["index_builds"]["count"]
    assert builds >= 0 and gained("media_indexes", "hits") + builds >= 2
    assert after["index_builds"]["count"] >= 1 and after["index_builds"]["seconds"] > 0


def test_prometheus_text_parses_and_agrees_with_the_json(origin):
    n = origin
    for method, path, body, _ in WORKLOAD:
        one(n, method, path, body)
    # A request is counted when nginx finalizes it, just after the client has its answer
    # (later still for a PUT whose files the thread pool wrote), so a report read at once
    # may miss the last one while the next report has it: compare the text with a JSON
    # report that did not change around it.
    for _ in range(50):
        doc, _ = status_json(n)
        r = one(n, "GET", "/status?format=prometheus")
        again, _ = status_json(n)
        if again["requests"] == doc["requests"]:
            break
        time.sleep(0.05)
    assert r.status == 200
    assert r.headers["content-type"] == "text/plain; version=0.0.4"
    assert r.headers["cache-control"] == "no-store"
    samples = parse_prometheus(r.body.decode())

    def family(name):
        """The samples of one metric, by their label values."""
        return {tuple(value for _, value in labels): v
                for (metric, labels), v in samples.items() if metric == name}

    pairs = {(fmt, status): v
             for fmt, by_status in doc["requests"]["by_format_and_status"].items()
             for status, v in by_status.items()}
    assert family("ngx_origin_requests_total") == {k: v["requests"] for k, v in pairs.items()}
    assert family("ngx_origin_sent_bytes_total") == {k: v["bytes"] for k, v in pairs.items()}
    assert family("ngx_origin_errors_total") == {(t,): c for t, c in doc["errors"].items()}
    for field, name in [("entries", "ngx_origin_cache_entries"),
                        ("bytes", "ngx_origin_cache_bytes"),
                        ("hits", "ngx_origin_cache_hits_total"),
                        ("misses", "ngx_origin_cache_misses_total"),
                        ("evictions", "ngx_origin_cache_evictions_total")]:
        assert family(name) == {(c,): v[field] for c, v in doc["caches"].items()}, name
    assert samples[("ngx_origin_index_builds_total", ())] == doc["index_builds"]["count"]
    assert samples[("ngx_origin_index_build_seconds_total", ())] == \
        pytest.approx(doc["index_builds"]["seconds"], abs=1e-9)
    assert samples[("ngx_origin_workers", ())] == doc["workers"] == 2


def test_methods_and_formats(origin):
    n = origin
    post = one(n, "POST", "/status", b"x")
    assert post.status == 405 and "GET" in post.headers["allow"]
    assert one(n, "PUT", "/status", b"x").status == 405
    head = one(n, "HEAD", "/status")
    assert head.status == 200 and head.headers["content-type"] == "application/json"
    assert int(head.headers["content-length"]) > 0 and head.body == b""
    assert one(n, "GET", "/status?format=xml").status == 400
    assert one(n, "GET", "/status?format=json").headers["content-type"] == "application/json"


def test_reload_keeps_the_zone_and_the_counts(origin):
    n = origin
    for _ in range(3):
        assert one(n, "GET", "/v/ladder.ism/.mpd").status == 200
    before, _ = status_json(n)
    old = set(n.worker_pids())
    os.kill(n.master_pid(), signal.SIGHUP)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        pids = set(n.worker_pids())
        if len(pids) == 2 and not pids & old:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the workers were not replaced: {old} -> {n.worker_pids()}")
    after, _ = status_json(n)
    assert after["requests"] == before["requests"]
    assert after["index_builds"] == before["index_builds"]
    # The new workers hold nothing yet; the old ones' slots are theirs now.
    assert after["workers"] == 2
    assert after["caches"]["media_indexes"]["entries"] == 0
    assert one(n, "GET", "/v/ladder.ism/.mpd").status == 200
    again, _ = status_json(n)
    assert again["requests"]["by_format"]["dash"]["requests"] == \
        before["requests"]["by_format"]["dash"]["requests"] + 1
    assert again["caches"]["media_indexes"]["entries"] >= 1
    assert not n.crashes()


def test_a_location_either_packages_or_reports(make_nginx):
    n = make_nginx()
    for body, message in [
        ("location /s { usp_handle_ism; origin_status; }", '"usp_handle_ism" and "origin_status"'),
        ("location /s { origin_status; usp_handle_api; }", '"usp_handle_api" and "origin_status"'),
        ("location /s { origin_status; origin_status; }", '"origin_status" directive is duplicate'),
        ("origin_status;", '"origin_status" directive is not allowed here'),
    ]:
        result = n.test_config(n.config(body))
        assert result.returncode != 0 and message in result.stderr, result.stderr
    assert n.test_config(n.config("location /s { origin_status; usp_handle_ism off; }")).returncode == 0


def test_the_example_allows_127_0_0_1_only(make_nginx):
    n = make_nginx(workers=2)
    media_dir(n, LADDER, {"ladder.ism": LADDER})
    n.start_config(n.example_config(ROOT / "nginx-conf" / "status.conf",
                                    {"/var/www/usp": str(n.root)}))
    mpd = one(n, "GET", "/v/ladder.ism/.mpd", source="127.0.0.2")
    assert mpd.status == 200
    refused = one(n, "GET", "/origin-status", source="127.0.0.2")
    assert refused.status == 403
    assert one(n, "GET", "/origin-status?format=prometheus", source="127.0.0.2").status == 403
    r = one(n, "GET", "/origin-status")
    assert r.status == 200 and r.headers["content-type"] == "application/json"
    doc = json.loads(r.body)
    assert doc["requests"]["by_format_and_status"] == {
        "dash": {"200": {"requests": 1, "bytes": len(mpd.raw)}}}
    p = one(n, "GET", "/origin-status?format=prometheus")
    assert p.status == 200
    samples = parse_prometheus(p.body.decode())
    assert samples[("ngx_origin_requests_total",
                    (("format", "dash"), ("status", "200")))] == 1
    assert one(n, "POST", "/origin-status", b"x").status == 405


def test_limit_except_inside_the_status_location_keeps_its_handler(make_nginx):
    n = make_nginx()
    n.start("location = /status { origin_status; "
            "limit_except GET { allow 127.0.0.1; deny all; } }")
    # POST from 127.0.0.1 passes limit_except and reaches the endpoint (not the static module).
    post = one(n, "POST", "/status", b"x")
    assert post.status == 405 and post.headers.get("allow") == "GET, HEAD"
    assert one(n, "POST", "/status", b"x", source="127.0.0.2").status == 403
    assert one(n, "GET", "/status", source="127.0.0.2").status == 200
