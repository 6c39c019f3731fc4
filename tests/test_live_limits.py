"""Live ingest that a stranger cannot break: safe defaults (no channel made by a push unless a
location allows it), limits on tracks and channels, stream names checked, and the file rules
VOD follows (`disable_symlinks`, no FIFO, regular files only) for every live URL.

Each test POSTs real CMAF (the committed fixture) and checks the status, the error token and
that nothing was written where the request was refused."""

import os
import socket
import xml.etree.ElementTree as ET

import pytest
import requests

from helpers.live import cmaf_pieces, example_origin, live_dir

SMIL = "{http://www.w3.org/2001/SMIL20/Language}"
EMPTY_CHANNEL = ('<smil xmlns="http://www.w3.org/2001/SMIL20/Language"><head/><body/>'
                 '</smil>')


def push(n, path, timeout=10):
    """The init segment and the first fragment of the fixture in one POST."""
    init, fragments = cmaf_pieces()
    return requests.post(n.url(path), data=init + fragments[0], timeout=timeout)


def token(r):
    return r.headers.get("x-origin-error")


def channel(d, name):
    """A publishing point made beforehand, as `ismtool create` or the API's PUT make one."""
    (d / f"{name}.isml").write_text(EMPTY_CHANNEL)
    (d / f"{name}.isml").chmod(0o666)


def tracks(d, name):
    return ET.parse(d / f"{name}.isml").getroot().findall(f".//{SMIL}video")


def test_a_push_creates_no_channel_by_default_even_in_a_vod_folder(make_nginx):
    n = make_nginx()
    d = live_dir(n)
    vod = n.root / "vod"
    vod.mkdir()
    vod.chmod(0o777)
    n.start("""
        location /live/ { usp_handle_ism; client_max_body_size 0; }
        location /vod/ { usp_handle_ism; }""")
    for path in ("/vod/v.isml/Streams(x)", "/live/new.isml/Streams(video)"):
        r = push(n, path)
        assert (r.status_code, token(r)) == (404, "INGEST_UNKNOWN_CHANNEL"), path
    assert list(vod.iterdir()) == [] and list(d.iterdir()) == []
    # A channel made beforehand takes ingest.
    channel(d, "made")
    assert push(n, "/live/made.isml/Streams(video)").status_code == 200
    assert n.get("/live/made.isml/.mpd").status_code == 200


def test_new_stream_names_past_the_track_limit_are_refused_and_write_nothing(make_nginx):
    """The default limit (32): a stranger inventing stream names cannot push the channel's
    video out of its manifests, nor make its .isml too large to read."""
    n = make_nginx()
    d = live_dir(n)
    channel(d, "ch")
    n.start("location /live/ { usp_handle_ism; client_max_body_size 0; }")
    assert push(n, "/live/ch.isml/Streams(video)").status_code == 200
    for k in range(31):
        assert push(n, f"/live/ch.isml/Streams(junk{k:03})").status_code == 200, k
    r = push(n, "/live/ch.isml/Streams(junk999)")
    assert (r.status_code, token(r)) == (403, "INGEST_TOO_MANY_TRACKS")
    assert len(tracks(d, "ch")) == 32
    archive = d / "ch.isml.archive"
    assert not (archive / "streams" / "junk999").exists()
    assert not any(p.name.startswith("junk999") for p in archive.iterdir())
    # Streams it holds go on, and every manifest still answers with the real video.
    assert push(n, "/live/ch.isml/Streams(video)").status_code == 200
    for manifest in (".mpd", ".m3u8", "Manifest"):
        assert n.get(f"/live/ch.isml/{manifest}").status_code == 200, manifest
    assert 'video=' in n.get("/live/ch.isml/.mpd").text


def test_the_limits_are_directives(make_nginx):
    n = make_nginx()
    d = live_dir(n)
    n.start("""
        location /live/ {
            usp_handle_ism;
            client_max_body_size 0;
            origin_live_auto_create on;
            origin_live_max_tracks 1;
            origin_live_max_channels 2;
        }""")
    assert push(n, "/live/a.isml/Streams(v)").status_code == 200
    r = push(n, "/live/a.isml/Streams(w)")
    assert (r.status_code, token(r)) == (403, "INGEST_TOO_MANY_TRACKS")
    assert push(n, "/live/b.isml/Streams(v)").status_code == 200
    r = push(n, "/live/c.isml/Streams(v)")
    assert (r.status_code, token(r)) == (403, "INGEST_TOO_MANY_CHANNELS")
    assert not (d / "c.isml").exists() and not (d / "c.isml.archive").exists()
    out = n.test_config(n.config("location / { usp_handle_ism; origin_live_max_tracks 0; }"))
    assert out.returncode != 0
    assert 'invalid value "0" in "origin_live_max_tracks" directive, expected 1 to 255' \
        in out.stderr


def test_client_mistakes_are_4xx_not_server_errors(make_nginx):
    n = make_nginx()
    d = live_dir(n)
    channel(d, "ch")
    (d / "dir.isml").mkdir()
    n.start("location /live/ { usp_handle_ism; client_max_body_size 0; }")
    for name in ("..", ".", "x" * 255, "%20" * 41):
        r = push(n, f"/live/ch.isml/Streams({name})")
        assert (r.status_code, token(r)) == (400, "INGEST_BAD_STREAM_NAME"), name
    assert not (d / "ch.isml.archive").exists()
    # An .isml that is a folder: not a file the origin may use (404, as for VOD).
    r = push(n, "/live/dir.isml/Streams(video)")
    assert (r.status_code, token(r)) == (404, "NOT_A_FILE")
    assert n.get("/live/dir.isml/state").status_code == 404
    assert n.crashes() == []


def test_a_fifo_isml_is_refused_at_once(make_nginx):
    n = make_nginx(workers=1)
    d = live_dir(n)
    os.mkfifo(d / "fifo.isml", 0o666)
    n.start("location /live/ { usp_handle_ism; usp_handle_api; client_max_body_size 0; }")
    # No writer ever opens the FIFO: an open that waited for one would never answer.
    r = push(n, "/live/fifo.isml/Streams(video)", timeout=5)
    assert (r.status_code, token(r)) == (404, "NOT_A_FILE")
    for path in ("/live/fifo.isml/state", "/live/fifo.isml/statistics", "/live/fifo.isml/.mpd"):
        assert n.get(path, timeout=5).status_code == 404, path
    r = requests.put(n.url("/live/fifo.isml"), data=EMPTY_CHANNEL, timeout=5)
    assert r.status_code == 404
    assert (d / "fifo.isml").is_fifo()


@pytest.fixture
def linked_channels(make_nginx):
    """An origin with `disable_symlinks on` whose live folder links to a channel kept outside
    it (its .isml and its archive: `ln`), and to that archive alone (`own`, whose .isml is a
    file of the folder). The channel outside got its media through a location of its own."""
    n = make_nginx()
    d = live_dir(n)
    outside = n.prefix / "outside"
    outside.mkdir()
    outside.chmod(0o777)
    n.start(f"""
        location /live/ {{
            usp_handle_ism;
            usp_handle_api;
            client_max_body_size 0;
            origin_live_auto_create on;
        }}
        location /followed/ {{
            alias html/live/;
            usp_handle_ism;
            disable_symlinks off;
        }}
        location /outside/ {{
            alias {outside}/;
            usp_handle_ism;
            client_max_body_size 0;
            origin_live_auto_create on;
        }}""", http_extra="disable_symlinks on;")
    assert push(n, "/outside/ln.isml/Streams(video)").status_code == 200
    (d / "ln.isml").symlink_to(outside / "ln.isml")
    (d / "ln.isml.archive").symlink_to(outside / "ln.isml.archive")
    channel(d, "own")
    (d / "own.isml.archive").symlink_to(outside / "ln.isml.archive")
    # `inner`: a real archive folder whose track folder links outside.
    channel(d, "inner")
    (d / "inner.isml.archive").mkdir()
    (d / "inner.isml.archive").chmod(0o777)
    for track in (outside / "ln.isml.archive").glob("*=*"):
        (d / "inner.isml.archive" / track.name).symlink_to(track)
    return n, d, outside


def test_disable_symlinks_holds_for_ingest(linked_channels):
    n, d, outside = linked_channels
    before = (outside / "ln.isml").read_bytes()
    held = sorted(p.name for p in (outside / "ln.isml.archive").iterdir())
    for path in ("/live/ln.isml/Streams(other)", "/live/own.isml/Streams(other)"):
        r = push(n, path)
        assert (r.status_code, token(r)) == (403, "FORBIDDEN"), path
    assert (outside / "ln.isml").read_bytes() == before
    assert sorted(p.name for p in (outside / "ln.isml.archive").iterdir()) == held
    assert not (outside / "ln.isml.archive" / "streams" / "other").exists()
    assert (d / "ln.isml").is_symlink()


def test_disable_symlinks_holds_for_playout_and_the_api(linked_channels):
    n, d, outside = linked_channels
    for name in ("ln", "own", "inner"):
        for what in (".mpd", ".m3u8", "Manifest", "state", "statistics", "archive"):
            r = n.get(f"/live/{name}.isml/{what}")
            assert r.status_code == 403, (name, what, r.status_code)
    for name in ("ln", "own"):
        assert requests.delete(n.url(f"/live/{name}.isml")).status_code == 403, name
        assert requests.put(n.url(f"/live/{name}.isml"), data=EMPTY_CHANNEL).status_code == 403
    r = push(n, "/live/inner.isml/Streams(video)")
    assert (r.status_code, token(r)) == (403, "FORBIDDEN")
    assert (outside / "ln.isml").exists() and (outside / "ln.isml.archive").is_dir()
    assert (d / "ln.isml").is_symlink() and (d / "own.isml.archive").is_symlink()
    # Where disable_symlinks is off, links are followed, as for VOD.
    assert n.get("/followed/ln.isml/.mpd").status_code == 200


def status_from(n, source_address, method, path, body=b""):
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


def test_the_shipped_ingest_config_takes_pushes_from_its_networks_only(make_nginx):
    n, channels = example_origin(make_nginx, "live-ingest.conf")
    channel(channels, "news")
    init, fragments = cmaf_pieces()
    body = init + fragments[0]
    path = "/channels/news.isml/Streams(video)"
    assert status_from(n, "127.0.0.2", "POST", path, body) == 403
    assert status_from(n, "127.0.0.2", "PUT", path, body) == 403
    assert not (channels / "news.isml.archive").exists()
    assert status_from(n, "127.0.0.1", "POST", path, body) == 200
    # Players anywhere; the statistics (encoder addresses) not for them.
    assert status_from(n, "127.0.0.2", "GET", "/channels/news.isml/.mpd") == 200
    assert status_from(n, "127.0.0.2", "GET", "/channels/news.isml/state") == 200
    assert status_from(n, "127.0.0.2", "GET", "/channels/news.isml/statistics") == 403
    stats = n.get("/channels/news.isml/statistics")
    assert stats.status_code == 200 and "127.0.0.1" in stats.text
    # No channel is made by a push here.
    assert status_from(n, "127.0.0.1", "POST", "/channels/other.isml/Streams(video)",
                       body) == 404
