"""A real nginx with the module loaded, on a free 127.0.0.1 port, always stopped.

Builds come from build/nginx-<version>/ (scripts/build.sh). Each Nginx gets its own prefix
directory with a generated nginx.conf; `start()` waits until the port answers and `stop()`
shuts down gracefully, then kills whatever is left.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
MODULE_NAME = "ngx_http_origin_module.so"
SYSTEM_NGINX = Path("/usr/sbin/nginx")


@dataclass(frozen=True)
class Build:
    """One nginx and the module built for it."""

    version: str
    nginx: Path
    module: Path
    test_module: Path | None

    @property
    def name(self) -> str:
        return f"nginx-{self.version}"

    @property
    def is_system_nginx(self) -> bool:
        """Whether this build runs the system's nginx (`make debian` links it)."""
        return self.nginx.resolve() == SYSTEM_NGINX.resolve()

    def module_for_tests(self) -> Path:
        """The test-hooks build when there is one (it can be made to panic on purpose)."""
        return self.test_module if self.test_module else self.module


def builds() -> list[Build]:
    """Every build under build/ that has a module and an nginx binary; ORIGIN_NGINX_VERSIONS
    (space separated) narrows the list."""
    wanted = os.environ.get("ORIGIN_NGINX_VERSIONS", "").split()
    found = []
    for d in sorted(BUILD.glob("nginx-*")):
        version = d.name.removeprefix("nginx-")
        nginx = d / "sbin" / "nginx"
        module = d / "modules" / MODULE_NAME
        test_module = d / "test-modules" / MODULE_NAME
        if not (nginx.exists() and (module.exists() or test_module.exists())):
            continue
        if wanted and version not in wanted:
            continue
        found.append(
            Build(
                version=version,
                nginx=nginx,
                module=module if module.exists() else test_module,
                test_module=test_module if test_module.exists() else None,
            )
        )
    return found


_shared_system_nginx_holds = 0


@contextlib.contextmanager
def system_nginx_lock(*, exclusive: bool):
    """Held shared by every test that runs the system nginx, and exclusively by the tests that
    install a package into the system (test_deb.py), across pytest-xdist workers: a package
    never changes under a running test. While an exclusive holder waits, a gate keeps new
    shared holders out, so it waits only for the tests already running. Shared holds nest in
    a process (a fixture holding it, then its test), and only the outermost takes the lock."""
    global _shared_system_nginx_holds
    if not exclusive and _shared_system_nginx_holds:
        _shared_system_nginx_holds += 1
        try:
            yield
        finally:
            _shared_system_nginx_holds -= 1
        return
    locks = BUILD / "test-locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / "system-nginx.gate", "w") as gate, \
            open(locks / "system-nginx.lock", "w") as lock:
        if exclusive:
            fcntl.flock(gate, fcntl.LOCK_EX)
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield  # closing the files releases the locks
            return
        fcntl.flock(gate, fcntl.LOCK_SH)
        fcntl.flock(lock, fcntl.LOCK_SH)
        fcntl.flock(gate, fcntl.LOCK_UN)
        _shared_system_nginx_holds = 1
        try:
            yield
        finally:
            _shared_system_nginx_holds = 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout=20.0, what="condition", interval=0.1):
    """Polls `check()` until it returns something true, and returns that; fails the test when
    `timeout` seconds pass first. Tests wait on the event they need, never a fixed time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate and its key for CN=localhost, made with the openssl CLI into
    `directory` (readable by the nginx master, which loads them). Returns (cert, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "c.pem", directory / "k.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "2", "-subj", "/CN=localhost"],
        check=True, capture_output=True, timeout=120,
    )
    return cert, key


def world_readable_dir(prefix: str) -> Path:
    """A temp dir that nginx workers (nobody, when the tests run as root) can traverse."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    d.chmod(0o755)
    return d


def nobody_can_read(path: Path) -> bool:
    """True when every directory up to `path` is traversable by others and `path` readable."""
    p = path.resolve()
    for parent in [p, *p.parents]:
        mode = parent.stat().st_mode
        if parent == p and p.is_file():
            if not mode & 0o004:
                return False
        elif not mode & 0o001:
            return False
    return True


class Nginx:
    """An nginx process with a generated configuration.

    `http` is the body of the http{} block's server{} (locations and server-level directives);
    `http_extra` goes into http{} itself; `main_extra` into the main context.

    `tls=(cert, key)` adds a second listener, `ssl_port`, to the same server{} that speaks
    HTTPS with that certificate (see `self_signed_cert`); `https_url()` names it.
    """

    def __init__(self, build: Build, *, workers: int = 1, module: Path | None = None,
                 wrapper: list[str] | None = None, tls: tuple[Path, Path] | None = None):
        self.build = build
        self.workers = workers
        self.module = module or build.module_for_tests()
        self.prefix = world_readable_dir(f"origin-{build.name}-")
        self.port = free_port()
        self.tls = tls
        self.ssl_port = free_port() if tls else None
        self.proc: subprocess.Popen | None = None
        for sub in ("logs", "conf", "html", "tmp"):
            (self.prefix / sub).mkdir(mode=0o755)
        self.root = self.prefix / "html"
        self.error_log = self.prefix / "logs" / "error.log"
        # A command the nginx binary runs under (e.g. taskset for benchmarks).
        self.wrapper = wrapper or []

    # ---------------------------------------------------------------- configuration
    def user_directive(self) -> str:
        if os.geteuid() != 0:
            return ""
        # Workers of a root master run as nobody; if they could not read the test files the
        # tests would measure permissions, not the module.
        return "" if nobody_can_read(self.root) else "user root;"

    def tls_listener(self) -> str:
        if not self.tls:
            return ""
        cert, key = self.tls
        return (f"listen 127.0.0.1:{self.ssl_port} ssl;\n"
                f"        ssl_certificate {cert};\n"
                f"        ssl_certificate_key {key};")

    def config(self, server: str, *, http_extra: str = "", main_extra: str = "",
               log_level: str = "info", worker_connections: int = 1024) -> str:
        p = self.prefix
        return f"""
load_module {self.module};
{self.user_directive()}
daemon off;
master_process on;
worker_processes {self.workers};
pid {p}/logs/nginx.pid;
error_log {self.error_log} {log_level};
{main_extra}
events {{ worker_connections {worker_connections}; }}
http {{
    access_log {p}/logs/access.log;
    client_body_temp_path {p}/tmp/client_body;
    proxy_temp_path {p}/tmp/proxy;
    fastcgi_temp_path {p}/tmp/fastcgi;
    uwsgi_temp_path {p}/tmp/uwsgi;
    scgi_temp_path {p}/tmp/scgi;
    default_type application/octet-stream;
    {http_extra}
    server {{
        listen 127.0.0.1:{self.port};
        {self.tls_listener()}
        root {self.root};
        {server}
    }}
}}
"""

    def write_config(self, text: str, name: str = "nginx.conf") -> Path:
        path = self.prefix / "conf" / name
        path.write_text(text)
        path.chmod(0o644)
        return path

    # ---------------------------------------------------------------- process
    def test_config(self, text: str) -> subprocess.CompletedProcess:
        """`nginx -t` on a full configuration text; returns the finished process."""
        conf = self.write_config(text, "test.conf")
        return subprocess.run(
            [str(self.build.nginx), "-p", str(self.prefix), "-c", str(conf), "-e",
             str(self.error_log), "-t"],
            capture_output=True, text=True, timeout=60,
        )

    def start(self, server: str, **kw) -> "Nginx":
        return self.start_config(self.config(server, **kw))

    def example_config(self, example: Path, replace: dict[str, str] | None = None) -> str:
        """An nginx-conf/ example made to run here: this module, this prefix's logs and temp
        paths, `listen 80` on this instance's port, and `replace` applied (backend addresses)."""
        p = self.prefix
        text = example.read_text()
        text = text.replace("load_module modules/ngx_http_origin_module.so;",
                            f"load_module {self.module};\n{self.user_directive()}\n"
                            f"daemon off;\npid {p}/logs/nginx.pid;\n"
                            f"error_log {self.error_log} info;")
        text = text.replace("listen 80;", f"listen 127.0.0.1:{self.port};")
        text = text.replace("http {", f"""http {{
    access_log {p}/logs/access.log;
    client_body_temp_path {p}/tmp/client_body;
    proxy_temp_path {p}/tmp/proxy;
    fastcgi_temp_path {p}/tmp/fastcgi;
    uwsgi_temp_path {p}/tmp/uwsgi;
    scgi_temp_path {p}/tmp/scgi;""", 1)
        for old, new in (replace or {}).items():
            text = text.replace(old, new)
        return text

    def start_config(self, text: str) -> "Nginx":
        """Starts nginx with a whole configuration text."""
        conf = self.write_config(text)
        self.proc = subprocess.Popen(
            [*self.wrapper, str(self.build.nginx), "-p", str(self.prefix), "-c", str(conf), "-e",
             str(self.error_log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"nginx exited at start: {err}\n{self.log_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("nginx did not start listening")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None
        # Workers are in the master's process group only by inheritance; make sure none is left.
        for pid in self.worker_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.prefix, ignore_errors=True)

    def master_pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def worker_pids(self) -> list[int]:
        master = self.master_pid()
        if master is None:
            return []
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(master)],
                             capture_output=True, text=True)
        return sorted(int(x) for x in out.stdout.split())

    # ---------------------------------------------------------------- client helpers
    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def https_url(self, path: str) -> str:
        assert self.ssl_port, "this Nginx was made without tls=(cert, key)"
        return f"https://127.0.0.1:{self.ssl_port}{path}"

    def get(self, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 30)
        return requests.get(self.url(path), **kw)

    def head(self, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 30)
        return requests.head(self.url(path), **kw)

    def raw_request(self, request: bytes) -> bytes:
        """Sends bytes as they are (for paths requests would normalise) and returns the reply."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(request)
            chunks = []
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
        return b"".join(chunks)

    def raw_status(self, path: bytes) -> int:
        reply = self.raw_request(b"GET " + path + b" HTTP/1.0\r\nHost: t\r\n\r\n")
        return int(reply.split(b" ", 2)[1])

    def log_text(self) -> str:
        return self.error_log.read_text(errors="replace") if self.error_log.exists() else ""

    def log_lines(self, needle: str) -> list[str]:
        return [line for line in self.log_text().splitlines() if needle in line]

    def crashes(self) -> list[str]:
        """Error-log lines that mean a worker died."""
        return [line for line in self.log_text().splitlines() if "exited on signal" in line]


def slow_sync_library() -> Path:
    """tests/support/slow_sync.c built (once) as an LD_PRELOAD library: fsync and fdatasync
    take ORIGIN_SLOW_SYNC_MS longer, and ORIGIN_SYNC_TRACE logs each one (slow storage)."""
    source = Path(__file__).resolve().parent / "support" / "slow_sync.c"
    library = BUILD / "slow_sync.so"
    if not library.exists() or library.stat().st_mtime < source.stat().st_mtime:
        BUILD.mkdir(exist_ok=True)
        partial = library.with_suffix(f".{os.getpid()}.tmp")
        subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(partial), str(source), "-ldl"],
                       check=True)
        partial.replace(library)
    return library


def slow_storage(sync_ms: int, trace: Path | None = None) -> list[str]:
    """A wrapper for `Nginx(wrapper=…)`: nginx and its workers see storage whose every sync
    takes `sync_ms` more milliseconds."""
    env = ["env", f"LD_PRELOAD={slow_sync_library()}", f"ORIGIN_SLOW_SYNC_MS={sync_ms}"]
    if trace is not None:
        env.append(f"ORIGIN_SYNC_TRACE={trace}")
    return env


# ---------------------------------------------------------------- media edits
def iso_language(code: str) -> int:
    """An ISO 639-2/T code packed as `mdhd` stores it: three 5-bit letters."""
    assert len(code) == 3 and code.islower(), code
    return sum((ord(c) - 0x60) << shift for c, shift in zip(code, (10, 5, 0)))


def with_mdhd_language(data: bytes, old: str, new: str) -> bytes:
    """`data` (an MP4) with the language of every track whose `mdhd` says `old` set to `new`:
    the same size and layout, another index (the track's language and name change)."""
    out = bytearray(data)
    found, at = 0, out.find(b"mdhd")
    while at != -1:
        version = out[at + 4]
        # After the type: version and flags, then two times, timescale and duration (32-bit
        # fields in version 0, 64-bit times and duration in version 1), then the language.
        lang_at = at + 4 + 4 + (8 + 8 + 4 + 8 if version == 1 else 4 + 4 + 4 + 4)
        if int.from_bytes(out[lang_at:lang_at + 2], "big") == iso_language(old):
            out[lang_at:lang_at + 2] = iso_language(new).to_bytes(2, "big")
            found += 1
        at = out.find(b"mdhd", at + 4)
    assert found, f"no mdhd with language {old}"
    return bytes(out)
