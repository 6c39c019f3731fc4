"""pytest fixtures: the nginx builds under test and a factory for running instances.

The suite runs serially (`pytest tests`) or in parallel (`pytest -n 8 --dist loadgroup tests`,
what scripts/test.sh does): every test has its own prefix, ports and temp dirs; media made by
a recipe is made once for all workers and kept (helpers.media.cached); tests that install a
system package hold the system nginx exclusively (harness.system_nginx_lock)."""

from __future__ import annotations

import pytest

from harness import Build, Nginx, builds, system_nginx_lock

BUILDS = builds()


def pytest_report_header(config):
    names = ", ".join(b.name for b in BUILDS) or "none (run make / make debian first)"
    return f"nginx builds under test: {names}"


# Files of long tests (players playing in real time, real-time live pushes, time-bounded
# churn), handed out first to pytest-xdist workers so that short tests fill the gaps at the end
# instead of one long test running alone on the last busy worker.
LONG_FIRST = ["test_live.py", "test_players.py", "test_hardening.py"]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    if not BUILDS:
        raise pytest.UsageError(
            "no nginx build with the module under build/: run `make` (and `make debian`)")
    if getattr(config.option, "numprocesses", None):
        rank = {name: i for i, name in enumerate(LONG_FIRST)}
        items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable


@pytest.fixture(params=BUILDS, ids=[b.name for b in BUILDS])
def build(request):
    return request.param


PHASE_REPORTS = pytest.StashKey[dict]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keeps each phase's report on the test item, for fixtures that report more on failure."""
    report = yield
    item.stash.setdefault(PHASE_REPORTS, {})[report.when] = report
    return report


@pytest.fixture
def make_nginx(build, request):
    """Factory: make_nginx(workers=1) -> an Nginx for the build under test, cleaned up after.
    When the test failed, the end of each one's error and access logs is printed (pytest shows
    it)."""
    made: list[Nginx] = []

    def factory(**kw) -> Nginx:
        n = Nginx(build, **kw)
        made.append(n)
        return n

    yield factory
    call = request.node.stash.get(PHASE_REPORTS, {}).get("call")
    for n in made:
        if call is not None and call.failed:
            print(f"---- {n.error_log} (last 3000 characters)\n{n.log_text()[-3000:]}")
            access = n.prefix / "logs" / "access.log"
            if access.exists():
                text = access.read_text(errors="replace")
                print(f"---- {access} (last 3000 characters)\n{text[-3000:]}")
        n.cleanup()


@pytest.fixture(autouse=True)
def _system_nginx(request):
    """A test that runs the system nginx (a build it is parametrized with is the Debian build,
    or it is marked `system_nginx`) holds it shared for its whole run; `system_package` tests
    take it exclusively themselves."""
    if request.node.get_closest_marker("system_package"):
        yield
        return
    callspec = getattr(request.node, "callspec", None)
    params = callspec.params.values() if callspec else ()
    if request.node.get_closest_marker("system_nginx") or any(
            isinstance(p, Build) and p.is_system_nginx for p in params):
        with system_nginx_lock(exclusive=False):
            yield
    else:
        yield
