"""The Debian package (`make deb`): its control data and contents; `dpkg -i` into the system next
to Debian's nginx puts every file where Debian's own modules put theirs and enables the module;
the system configuration still passes `nginx -t` and loads it; the system /usr/sbin/nginx, with
the package's load_module line and a configuration of our own, serves DASH and HLS; the
packaged ismtool runs; `dpkg -r` and `dpkg --purge` take everything away again.

The system nginx service is never started, stopped or reloaded by the tests (dpkg's
`nginx-reload` trigger reloads it only if it is already running, as for Debian's modules).
Every test that installs the package purges it afterwards, whatever happened."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from harness import ROOT, free_port, system_nginx_lock, world_readable_dir
from helpers.media import FIXTURES

# The package goes into the system next to the nginx other tests run: these tests run on one
# pytest-xdist worker, one after the other, with the system nginx to themselves.
pytestmark = [pytest.mark.system_package, pytest.mark.xdist_group("system_package")]

PACKAGE = "libnginx-mod-http-origin"
NGINX = Path("/usr/sbin/nginx")
MODULE = Path("/usr/lib/nginx/modules/ngx_http_origin_module.so")
AVAILABLE = Path("/usr/share/nginx/modules-available/mod-http-origin.conf")
ENABLED = Path("/etc/nginx/modules-enabled/50-mod-http-origin.conf")
DISABLED = Path("/etc/nginx/modules-enabled/50-mod-http-origin.conf.removed")
ISMTOOL = Path("/usr/bin/ismtool")
COPYRIGHT = Path(f"/usr/share/doc/{PACKAGE}/copyright")
SHIPPED = [MODULE, AVAILABLE, ISMTOOL, COPYRIGHT]
LOAD_LINE = "load_module modules/ngx_http_origin_module.so;"


def run(*cmd: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    if check:
        assert out.returncode == 0, f"{' '.join(cmd)}: {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out


def dpkg(*args: str) -> subprocess.CompletedProcess:
    """dpkg ARGS, waiting (up to 5 minutes) while another dpkg or apt holds the lock."""
    deadline = time.monotonic() + 300
    while True:
        out = run("dpkg", *args, check=False)
        if out.returncode == 0 or "lock" not in out.stderr or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert out.returncode == 0, f"dpkg {' '.join(args)}: {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out


def dpkg_status() -> str:
    """`install ok installed`, `deinstall ok config-files`, or "" when dpkg knows nothing."""
    out = run("dpkg-query", "-W", "-f=${Status}", PACKAGE, check=False)
    status = out.stdout.strip() if out.returncode == 0 else ""
    return "" if status.endswith("not-installed") else status


def purge() -> None:
    if dpkg_status():
        dpkg("--purge", PACKAGE)


def system_nginx_t() -> str:
    """`nginx -T` on the system configuration (/etc/nginx/nginx.conf): must pass; returns the
    configuration dump. It only reads and checks the files; the service is not touched."""
    out = run(str(NGINX), "-T")
    assert "test is successful" in out.stderr, out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def deb() -> Path:
    """`make deb`: the release module for the installed Debian nginx and ismtool (both only
    rebuilt when stale), packaged. Returns the .deb. The system nginx is this module's alone
    until its last test is done."""
    if os.geteuid() != 0:
        pytest.fail("test_deb installs a package into the system: run it as root")
    for need in (NGINX, Path("/etc/nginx/nginx.conf")):
        assert need.exists(), f"{need} missing: Debian's nginx is not installed (scripts/setup.sh)"
    with system_nginx_lock(exclusive=True):
        out = run("make", "--no-print-directory", "-C", str(ROOT), "deb", timeout=3600)
        path = Path([line for line in out.stdout.splitlines() if line.endswith(".deb")][-1])
        assert path.is_file() and path.parent == ROOT / "build", out.stdout
        yield path


@pytest.fixture
def installed(deb):
    """The package installed with `dpkg -i`; purged afterwards, even when the test fails."""
    purge()  # a leftover of an interrupted run
    assert not ENABLED.exists() and not MODULE.exists()
    try:
        dpkg("-i", str(deb))
        assert dpkg_status() == "install ok installed"
        yield deb
    finally:
        purge()


def field(deb: Path, name: str) -> str:
    return run("dpkg-deb", "-f", str(deb), name).stdout.strip()


def workspace_version() -> str:
    text = (ROOT / "Cargo.toml").read_text()
    section = text.split("[workspace.package]", 1)[1]
    return re.search(r'^version\s*=\s*"([^"]+)"', section, re.M).group(1)


def test_package_control_and_contents(deb):
    version = workspace_version()
    arch = run("dpkg", "--print-architecture").stdout.strip()
    assert deb.name == f"{PACKAGE}_{version}_{arch}.deb"
    assert field(deb, "Package") == PACKAGE
    assert field(deb, "Version") == version
    assert field(deb, "Architecture") == arch
    assert field(deb, "Section") == "httpd"
    assert re.fullmatch(r".+ <[^@ ]+@[^@ ]+>", field(deb, "Maintainer"))
    assert field(deb, "Description")
    # Tied to the installed nginx's module ABI, the virtual package Debian's nginx provides.
    provides = run("dpkg-query", "-W", "-f=${Provides}", "nginx").stdout
    abi = [p.strip() for p in provides.split(",") if p.strip().startswith("nginx-abi-")]
    assert len(abi) == 1, provides
    depends = [d.strip() for d in field(deb, "Depends").split(",")]
    assert abi[0] in depends
    assert any(re.fullmatch(r"libc6 \(>= [0-9.]+\)", d) for d in depends), depends

    listing = run("dpkg-deb", "-c", str(deb)).stdout.splitlines()
    files = {line.split()[-1].removeprefix(".") for line in listing if line.startswith("-")}
    assert files == {str(p) for p in SHIPPED}
    links = [line for line in listing if line.startswith("l")]
    assert links == []  # the link in modules-enabled is made by postinst, as Debian does
    for line in listing:
        assert line.split()[1] == "root/root", line
        mode = line.split()[0]
        if line.endswith(str(ISMTOOL)):
            assert mode == "-rwxr-xr-x"
        elif mode.startswith("-"):
            assert mode == "-rw-r--r--", line

    info = run("dpkg-deb", "-I", str(deb)).stdout
    for script in ("postinst", "prerm", "postrm"):
        assert re.search(rf"\*\s+{script}\s+#!/bin/sh", info), info
    md5sums = run("dpkg-deb", "-I", str(deb), "md5sums").stdout.split("\n")
    assert sorted(line.split()[1] for line in md5sums if line) == sorted(
        str(p).lstrip("/") for p in SHIPPED)


def test_install_lays_files_out_like_debian_modules(installed):
    for path in SHIPPED:
        assert path.is_file(), path
    assert AVAILABLE.read_text().strip() == LOAD_LINE
    assert ENABLED.is_symlink() and os.readlink(ENABLED) == str(AVAILABLE)
    # `modules/` is relative to nginx's prefix: Debian links it to the modules path.
    assert (Path("/usr/share/nginx/modules") / MODULE.name).resolve() == MODULE.resolve()
    assert os.access(ISMTOOL, os.X_OK)
    listed = set(run("dpkg", "-L", PACKAGE).stdout.split())
    assert {str(p) for p in SHIPPED} <= listed
    dpkg("--verify", PACKAGE)  # the md5sums match what landed

    dump = system_nginx_t()
    assert f"# configuration file {ENABLED}:\n{LOAD_LINE}" in dump


def wait_listening(proc: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            log_text = log.read_text() if log.exists() else ""
            raise AssertionError(f"nginx exited at start: {err}\n{log_text}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("nginx did not start listening")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    if proc.stderr:
        proc.stderr.close()


def test_system_nginx_serves_dash_and_hls_with_the_package(installed):
    assert run(str(ISMTOOL), "--help").stdout.startswith("ngx-origin")
    prefix = world_readable_dir("origin-deb-")
    try:
        media = prefix / "html" / "v"
        media.mkdir(parents=True, mode=0o755)
        (prefix / "html").chmod(0o755)
        for name in ("ladder-video-360.ismv", "ladder-audio-eng.isma"):
            shutil.copy(FIXTURES / name, media / name)
        # The packaged ismtool writes the server manifest.
        run(str(ISMTOOL), "create", "-o", str(media / "demo.ism"),
            str(media / "ladder-video-360.ismv"), str(media / "ladder-audio-eng.isma"))
        for p in media.iterdir():
            p.chmod(0o644)
        info = run(str(ISMTOOL), "inspect", "--json", str(media / "ladder-video-360.ismv")).stdout
        assert '"tracks"' in info

        port = free_port()
        log = prefix / "error.log"
        # The package's modules-enabled link is what loads the module. Its line is relative to
        # nginx's prefix (modules/ -> /usr/lib/nginx/modules), so this nginx keeps the system
        # prefix (no -p) and everything it writes goes to our directory.
        conf = prefix / "nginx.conf"
        conf.write_text(f"""
include /etc/nginx/modules-enabled/*.conf;
daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {log} info;
events {{ worker_connections 64; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {prefix}/html;
        location ~ \\.(ism|isml|mp4)(/|$) {{ usp_handle_ism; }}
    }}
}}
""")
        conf.chmod(0o644)
        out = run(str(NGINX), "-c", str(conf), "-e", str(log), "-T")
        assert f"# configuration file {ENABLED}:\n{LOAD_LINE}" in out.stdout
        proc = subprocess.Popen([str(NGINX), "-c", str(conf), "-e", str(log)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_listening(proc, port, log)
            base = f"http://127.0.0.1:{port}/v/demo.ism"
            mpd = requests.get(f"{base}/.mpd", timeout=30)
            assert mpd.status_code == 200
            assert mpd.headers["Content-Type"] == "application/dash+xml"
            assert b"urn:mpeg:dash:schema:mpd:2011" in mpd.content
            master = requests.get(f"{base}/.m3u8", timeout=30)
            assert master.status_code == 200
            assert master.headers["Content-Type"] == "application/vnd.apple.mpegurl"
            assert master.text.startswith("#EXTM3U")
            variant = next(l for l in master.text.splitlines() if l and not l.startswith("#"))
            playlist = requests.get(f"{base}/{variant}", timeout=30)
            assert playlist.status_code == 200
            assert playlist.headers["Content-Type"] == "application/vnd.apple.mpegurl"
            segment = next(l for l in playlist.text.splitlines() if l and not l.startswith("#"))
            variant_dir = variant.rsplit("/", 1)[0] + "/" if "/" in variant else ""
            seg = requests.get(f"{base}/{variant_dir}{segment}", timeout=30)
            assert seg.status_code == 200 and len(seg.content) > 1000
            assert seg.content[0] == 0x47  # an MPEG-TS sync byte
        finally:
            stop(proc)
        log_text = log.read_text()
        assert "exited on signal" not in log_text
        assert "[alert]" not in log_text and "[emerg]" not in log_text, log_text
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


def test_remove_and_purge_leave_nothing(installed):
    dpkg("-r", PACKAGE)
    assert dpkg_status() == "deinstall ok config-files"
    for path in SHIPPED:
        assert not path.exists(), path
    # Disabled as Debian's modules are: the link is moved aside (out of the *.conf include).
    assert not ENABLED.exists() and not ENABLED.is_symlink()
    assert DISABLED.is_symlink()
    assert LOAD_LINE not in system_nginx_t()

    # Installing again after a remove enables it again.
    dpkg("-i", str(installed))
    assert ENABLED.is_symlink() and not DISABLED.is_symlink()
    assert LOAD_LINE in system_nginx_t()

    dpkg("--purge", PACKAGE)
    assert dpkg_status() == ""
    for path in SHIPPED:
        assert not path.exists(), path
    assert not ENABLED.is_symlink() and not DISABLED.is_symlink()
    assert not Path(f"/usr/share/doc/{PACKAGE}").exists()
    assert LOAD_LINE not in system_nginx_t()
