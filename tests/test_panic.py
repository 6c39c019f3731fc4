"""No panic crosses into nginx: a forced panic (compiled only into test-hooks builds) gives a
500 and an error-log line, and the same worker keeps serving."""

import shutil

import pytest

from harness import ROOT


@pytest.fixture
def origin(make_nginx, build):
    if build.test_module is None:
        pytest.fail(f"{build.name} has no test-hooks module: run make TEST_HOOKS=1")
    n = make_nginx(workers=1)
    (n.root / "v").mkdir(mode=0o755)
    shutil.copy(ROOT / "tests" / "fixtures" / "progressive.mp4", n.root / "v" / "a.mp4")
    (n.root / "v" / "a.mp4").chmod(0o644)
    return n.start(r"location ~ \.(ism|mp4)(/|$) { usp_handle_ism; }")


def test_forced_panic_gives_500_and_worker_survives(origin):
    workers_before = origin.worker_pids()
    assert len(workers_before) == 1
    for _ in range(3):
        r = origin.get("/v/a.mp4/__origin_test_panic")
        assert r.status_code == 500
    lines = origin.log_lines("internal error (panic)")
    assert len(lines) == 3, origin.log_text()
    assert "forced panic for the crash-safety test" in lines[0]
    assert "[alert]" in lines[0]
    # The same worker answers afterwards: it was never replaced.
    r = origin.get("/v/a.mp4")
    assert r.status_code == 200
    assert origin.worker_pids() == workers_before
    assert origin.crashes() == []


def test_production_build_has_no_panic_trigger(make_nginx, build):
    if not build.module.exists() or build.module == build.test_module:
        pytest.fail(f"{build.name} has no production module: run make")
    n = make_nginx(module=build.module)
    (n.root / "v").mkdir(mode=0o755)
    shutil.copy(ROOT / "tests" / "fixtures" / "progressive.mp4", n.root / "v" / "a.mp4")
    (n.root / "v" / "a.mp4").chmod(0o644)
    n.start(r"location ~ \.(ism|mp4)(/|$) { usp_handle_ism; }")
    assert n.get("/v/a.mp4/__origin_test_panic").status_code == 404
