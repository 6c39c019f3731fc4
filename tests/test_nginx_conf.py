"""Every example in nginx-conf/ passes `nginx -t` with the module loaded."""

import shutil
import subprocess
from pathlib import Path

import pytest

from harness import ROOT

EXAMPLES = sorted((ROOT / "nginx-conf").glob("*.conf"))


def test_examples_exist():
    names = {p.name for p in EXAMPLES}
    for required in ["load-module.conf", "vod.conf", "live-ingest.conf", "progressive-mp4.conf",
                     "deny-sources.conf", "license-key.conf", "skip-rewrite.conf",
                     "proxy-pass.conf", "live-api.conf", "s3.conf", "status.conf", "drm.conf",
                     "complete.conf"]:
        assert required in names


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_passes_nginx_t(make_nginx, example: Path):
    n = make_nginx()
    modules = n.prefix / "modules"
    modules.mkdir()
    shutil.copy(n.module, modules / "ngx_http_origin_module.so")
    (n.prefix / "conf" / "usp-license.key").write_text("example-license-key\n")
    conf = n.prefix / "conf" / example.name
    # Cache directories of the examples live under the test's prefix.
    (n.prefix / "cache").mkdir(mode=0o777)
    conf.write_text(example.read_text().replace("/var/cache/nginx/", f"{n.prefix}/cache/"))
    result = subprocess.run(
        [str(n.build.nginx), "-p", str(n.prefix), "-c", str(conf), "-e", str(n.error_log), "-t"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
