"""A storage backend that misbehaves on purpose, for the fault tests of remote sources.

It serves the files under a root with byte ranges and a stable ETag, like any static server,
except that the first path segment of a request picks a behaviour:

    /ok/...        normal
    /slow/...      waits `delay` seconds before answering
    /503/...       answers 503
    /503once/...   answers 503 to the first request for each file, then normally
    /reset/...     sends the headers and half the body, then resets the connection
    /short/...     sends fewer bytes than its Content-Length, then closes
    /long/...      sends more bytes than the range asked for
    /badrange/...  states a Content-Range one byte off
    /norange/...   answers 206 without a Content-Range
    /etag/...      states a different ETag on every response
    /redirect/...  answers 302 to /ok/...
    /huge/...      states a Content-Length of a terabyte and sends zeros until the reader stops
    /endless/...   sends zeros without a Content-Length until the reader stops
    /endlesschunked/...  the same as a chunked body that never ends

Every request is recorded (`requests`), so tests count what the origin asked for.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


# Modes whose body never ends (as far as any fetch limit is concerned).
ENDLESS = ("huge", "endless", "endlesschunked")
# Bytes an endless body stops at if its reader does not: far past every fetch limit.
ENDLESS_BOUND = 4 << 30


class FaultyBackend:
    def __init__(self, root: Path, delay: float = 3.0):
        self.root = root
        self.delay = delay
        self.requests: list[tuple[str, str, str]] = []  # (mode, path, range)
        self.failed_once: set[str] = set()
        self.counter = 0
        self.lock = threading.Lock()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                backend.handle(self)

        class Server(ThreadingHTTPServer):
            # Bursts of a thousand connections (the concurrency benchmark) must queue, not fail.
            request_queue_size = 4096

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FaultyBackend":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def count(self, mode: str | None = None) -> int:
        with self.lock:
            return sum(1 for m, _, _ in self.requests if mode is None or m == mode)

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = h.path.split("?")[0].lstrip("/").split("/", 1)
        mode, rel = (parts + [""])[:2]
        rng = h.headers.get("Range", "")
        with self.lock:
            self.requests.append((mode, rel, rng))
            self.counter += 1
            serial = self.counter
        path = self.root / rel
        if ".." in rel.split("/") or not path.is_file():
            return self.send(h, 404, b"not found")
        size = path.stat().st_size
        if mode == "slow":
            time.sleep(self.delay)
        if mode == "503":
            return self.send(h, 503, b"unavailable")
        if mode == "503once":
            with self.lock:
                first = rel not in self.failed_once
                self.failed_once.add(rel)
            if first:
                return self.send(h, 503, b"unavailable")
        if mode in ENDLESS:
            return self.endless(h, mode)
        if mode == "redirect":
            h.send_response(302)
            h.send_header("Location", f"/ok/{rel}")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        first, last = 0, size - 1
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng)
        partial = m is not None
        if m:
            first = int(m.group(1))
            if m.group(2):
                last = min(int(m.group(2)), size - 1)
            if first >= size:
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{size}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return

        def read(start: int, end: int) -> bytes:
            with open(path, "rb") as f:
                f.seek(start)
                return f.read(max(0, end - start))

        body = read(first, last + 1)
        etag = f'"v{serial}"' if mode == "etag" else f'"{os.stat(path).st_mtime_ns:x}-{size:x}"'
        stated_first, stated_last = first, last
        if mode == "badrange":
            stated_first, stated_last = first + 1, min(last + 1, size - 1)
        if mode == "long":
            body = read(first, last + 101) + b"\0" * (0 if last + 101 <= size else 100)
        h.send_response(206 if partial else 200)
        h.send_header("ETag", etag)
        h.send_header("Accept-Ranges", "bytes")
        if partial and mode != "norange":
            h.send_header("Content-Range", f"bytes {stated_first}-{stated_last}/{size}")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if mode == "reset":
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            h.connection.close()
            h.close_connection = True
            return
        if mode == "short":
            h.wfile.write(body[: max(0, len(body) - 10)])
            h.wfile.flush()
            h.close_connection = True
            return
        h.wfile.write(body)

    @staticmethod
    def endless(h: BaseHTTPRequestHandler, mode: str) -> None:
        """A body larger than any fetch may read: zeros until the reader closes (or a bound far
        past every limit, so a reader that never stops cannot keep the thread forever)."""
        h.send_response(200)
        if mode == "huge":
            h.send_header("Content-Length", str(1 << 40))
        elif mode == "endlesschunked":
            h.send_header("Transfer-Encoding", "chunked")
        else:
            h.send_header("Connection", "close")
        h.end_headers()
        block = bytes(64 << 10)
        chunk = b"%x\r\n" % len(block) + block + b"\r\n"
        try:
            for _ in range(ENDLESS_BOUND // len(block)):
                h.wfile.write(chunk if mode == "endlesschunked" else block)
        except OSError:
            pass
        h.close_connection = True

    @staticmethod
    def send(h: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
        h.send_response(status)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
