"""The content handler in a real nginx: statuses for every kind of URL, hostile paths included.
Each test runs with 1 and 2 workers."""

import shutil

import pytest

from helpers.media import FIXTURES

LOCATION = r"location ~ \.(ism|isml|mp4)(/|$) { usp_handle_ism; }"


@pytest.fixture(params=[1, 2], ids=["1worker", "2workers"])
def origin(make_nginx, request):
    n = make_nginx(workers=request.param)
    media = n.root / "v"
    media.mkdir(mode=0o755)
    shutil.copy(FIXTURES / "progressive.mp4", media / "a.mp4")
    (media / "a.mp4").chmod(0o644)
    (media / "p.ism").write_text("<smil/>")
    (media / "p.ism").chmod(0o644)
    (n.prefix / "secret.txt").write_text("outside the root\n")
    return n.start(LOCATION)


def test_unknown_virtual_path_is_404(origin):
    for path in ["/v/a.mp4/nonsense", "/v/a.mp4/Manifest/extra", "/v/p.ism/index.html",
                 "/v/p.ism/QualityLevels(1)/Nonsense(x=1)", "/v/p.ism/a-b.ts"]:
        r = origin.get(path)
        assert r.status_code == 404, path
    assert origin.crashes() == []


def test_malformed_virtual_paths_are_404(origin):
    for path in ["/v/p.ism/QualityLevels(1/Fragments(video=0)",
                 "/v/p.ism/QualityLevels(1)/Fragments(video=abc)",
                 "/v/p.ism/QualityLevels(1)/Fragments(video=0))",
                 "/v/p.ism/v-video=99999999999999999999999-1.ts",
                 "/v/p.ism/keyframes/master.m3u8"]:
        assert origin.get(path).status_code == 404, path


def test_bad_query_is_400(origin):
    for q in ["max_bitrate=abc", "vbegin=xyz", "hls_fmp4=maybe", "a=%zz", "a=%00",
              "mpd_segment_template=nope", "vbegin=10&vend=5"]:
        assert origin.raw_status(b"/v/a.mp4/.mpd?" + q.encode()) == 400, q


def test_missing_manifest_is_404(origin):
    assert origin.get("/v/missing.ism/Manifest").status_code == 404
    assert origin.get("/v/missing.mp4").status_code == 404
    assert origin.log_lines("missing.ism: not found")


def test_server_manifest_without_virtual_path_is_not_served(origin):
    assert origin.get("/v/p.ism").status_code == 404
    assert origin.get("/v/p.ism/").status_code == 404


def test_paths_escaping_the_root_never_read_outside(origin):
    # nginx itself normalises ".." (and refuses to climb above "/"); whatever reaches the module
    # must never read outside the root.
    for raw in [b"/v/../../secret.txt/x.ism/Manifest", b"/%2e%2e/secret.txt.ism/Manifest",
                b"/v/%2e%2e/%2e%2e/secret.ism/Manifest", b"/v/..%2f..%2fsecret.mp4",
                b"/v/a.mp4/..%2f..%2f..%2fsecret.txt", b"/v/%252e%252e/a.mp4"]:
        status = origin.raw_status(raw)
        assert status in (400, 403, 404), (raw, status)
    body = origin.raw_request(b"GET /v/../../secret.txt HTTP/1.0\r\n\r\n")
    assert b"outside the root" not in body


def test_control_characters_and_overlong_paths(origin):
    assert origin.raw_status(b"/v/a%00b.ism/Manifest") in (400, 404)
    assert origin.raw_status(b"/v/a%0ab.ism/Manifest") == 400
    long_name = b"a" * 5000
    assert origin.raw_status(b"/v/" + long_name + b".ism/Manifest") in (414, 400)


def test_routed_forms(origin):
    # Packaged formats answer; forms this build does not package yet answer an honest 501.
    for path in ["/v/a.mp4/.mpd", "/v/a.mp4/.m3u8", "/v/a.mp4/Manifest"]:
        assert origin.get(path).status_code == 200, path
    assert origin.get("/v/a.mp4/keyframes/a-video=1000-audio_eng=1000.m3u8").status_code == 404
    # HDS only where usp_handle_f4f is on.
    assert origin.get("/v/a.mp4/a.f4m").status_code == 404


def test_methods(origin):
    import requests
    r = requests.post(origin.url("/v/a.mp4"), data=b"x", timeout=10)
    assert r.status_code == 405
    assert "GET" in r.headers.get("Allow", "")
    r = requests.delete(origin.url("/v/p.ism/Manifest"), timeout=10)
    assert r.status_code == 405


def test_a_live_api_put_over_its_limit_is_413(make_nginx):
    """A publishing point's PUT body over the 1 MiB a server manifest may take: its own status
    and token, not a malformed body."""
    import requests
    n = make_nginx()
    channels = n.root / "ch"
    channels.mkdir()
    channels.chmod(0o777)  # the workers write the channels here
    n.start("""
        location /ch/ { usp_handle_ism; usp_handle_api; client_max_body_size 8m; }""")
    head = ('<smil xmlns="http://www.w3.org/2001/SMIL20/Language"><head>'
            '<meta name="dvr_window_length" content="20"/></head><body/></smil>')
    big = head + " " * (1 << 20)
    r = requests.put(n.url("/ch/big.isml"), data=big, timeout=30)
    assert r.status_code == 413, r.text
    assert r.headers["X-Origin-Error"] == "REQUEST_TOO_LARGE"
    assert not (n.root / "ch" / "big.isml").exists()
    # Within the limit, the same channel is made.
    assert requests.put(n.url("/ch/big.isml"), data=head, timeout=30).status_code == 201
