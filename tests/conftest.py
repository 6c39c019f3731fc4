"""pytest fixtures: the nginx builds under test and a factory for running instances."""

from __future__ import annotations

import pytest

from harness import Nginx, builds

BUILDS = builds()


def pytest_report_header(config):
    names = ", ".join(b.name for b in BUILDS) or "none (run make / make debian first)"
    return f"nginx builds under test: {names}"


def pytest_collection_modifyitems(config, items):
    if not BUILDS:
        raise pytest.UsageError(
            "no nginx build with the module under build/: run `make` (and `make debian`)")


@pytest.fixture(params=BUILDS, ids=[b.name for b in BUILDS])
def build(request):
    return request.param


@pytest.fixture
def make_nginx(build):
    """Factory: make_nginx(workers=1) -> an Nginx for the build under test, cleaned up after."""
    made: list[Nginx] = []

    def factory(**kw) -> Nginx:
        n = Nginx(build, **kw)
        made.append(n)
        return n

    yield factory
    for n in made:
        n.cleanup()
