"""The core's tracing events reach nginx's error log at the matching level; debug events appear
only with `error_log … debug`."""

import shutil

from harness import ROOT


def start(make_nginx, level):
    n = make_nginx()
    (n.root / "v").mkdir(mode=0o755)
    shutil.copy(ROOT / "tests" / "fixtures" / "progressive.mp4", n.root / "v" / "a.mp4")
    (n.root / "v" / "a.mp4").chmod(0o644)
    return n.start(r"location ~ \.mp4(/|$) { usp_handle_ism; }", log_level=level)


def test_debug_events_only_at_debug_level(make_nginx):
    n = start(make_nginx, "info")
    n.get("/v/a.mp4/bogus")
    assert n.log_lines("ngx_origin: unknown virtual path"), n.log_text()
    assert not n.log_lines("routed")
    n.stop()

    n = start(make_nginx, "debug")
    n.get("/v/a.mp4")
    lines = n.log_lines("ngx_origin: routed")
    assert lines, n.log_text()
    assert "[debug]" in lines[0]
    assert "manifest=/v/a.mp4" in lines[0]


def test_client_errors_log_at_info_not_error(make_nginx):
    n = start(make_nginx, "error")
    n.get("/v/a.mp4/bogus")
    n.get("/v/missing.mp4")
    assert not n.log_lines("ngx_origin"), n.log_text()
