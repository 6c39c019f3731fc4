"""Test media: the committed fixtures, ismtool server manifests over them, ffmpeg frame hashes,
ISO-BMFF box walking, and media made by a recipe once for every test (see `cached`)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from harness import BUILD, ROOT

FIXTURES = ROOT / "tests" / "fixtures"
ISMTOOL = ROOT / "target" / "release" / "ismtool"
LADDER = ["ladder-video-360.ismv", "ladder-video-480.ismv", "ladder-video-720.ismv",
          "ladder-audio-eng.isma", "ladder-audio-fra.isma"]
MPD_NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}
# Made media shared by every test (and every pytest-xdist worker) of every run.
CACHE = BUILD / "test-cache"


def media_dir(n, files, manifests: dict[str, list[str]]):
    """`<root>/v` with `files` copied from the fixtures and each server manifest created over
    its inputs (names in that folder), all readable by the workers."""
    media = n.root / "v"
    media.mkdir(mode=0o755)
    for f in files:
        shutil.copy(FIXTURES / f, media / f)
    for name, inputs in manifests.items():
        subprocess.run([str(ISMTOOL), "create", "-o", str(media / name),
                        *[str(media / f) for f in inputs]], check=True, capture_output=True)
    for p in media.iterdir():
        p.chmod(0o644)
    return media


def frame_hashes(source: str, stream: str) -> list[str]:
    """Decoded frame (or audio packet) hashes, timestamps left out: packaging must not change a
    single sample, while clients are free to start their clocks where they like. `source` is
    a URL or a file; a committed fixture is decoded once per process (it never changes)."""
    if "://" not in source and Path(source).resolve().parent == FIXTURES:
        return list(fixture_frame_hashes(str(Path(source).resolve()), stream))
    return decode_frame_hashes(source, stream)


@lru_cache(maxsize=None)
def fixture_frame_hashes(path: str, stream: str) -> tuple[str, ...]:
    return tuple(decode_frame_hashes(path, stream))


def decode_frame_hashes(source: str, stream: str) -> list[str]:
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", source, "-map", stream, "-f", "framemd5", "-"],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return [line.rsplit(",", 1)[1].strip() for line in out.stdout.splitlines()
            if line and not line.startswith("#")]


def boxes(data: bytes):
    """(type, body) of each top-level box."""
    at = 0
    while at + 8 <= len(data):
        size = int.from_bytes(data[at:at + 4], "big")
        header = 8
        if size == 1:
            size, header = int.from_bytes(data[at + 8:at + 16], "big"), 16
        assert size >= header and at + size <= len(data), (data[at + 4:at + 8], size)
        yield data[at + 4:at + 8], data[at + header:at + size]
        at += size


@lru_cache(maxsize=None)
def ffmpeg_version() -> str:
    return subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True,
                          check=True).stdout.splitlines()[0]


def cached(name: str, recipe: list[str], inputs: list[Path],
           make: Callable[[Path], None]) -> Path:
    """`make(path)` run once for every test, every xdist worker and every later run: the result
    is kept under build/test-cache/ as `name` (a suffix such as `.mp4` is kept) with a key of
    `recipe` (the command or settings that make it), the contents of `inputs` and the ffmpeg
    version, so a changed recipe or input makes it again.
    The first caller makes it under a file lock while the others wait; `make` writes a file or
    a directory at the path it is given, which appears under its final name only when done."""
    key = hashlib.sha256()
    for part in [ffmpeg_version(), *recipe]:
        key.update(part.encode() + b"\0")
    for p in inputs:
        key.update(hashlib.sha256(p.read_bytes()).digest())
    stem, dot, suffix = name.partition(".")
    out = CACHE / f"{stem}-{key.hexdigest()[:16]}{dot}{suffix}"
    if out.exists():
        return out
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not out.exists():
            tmp = CACHE / f".tmp-{os.getpid()}-{out.name}"  # same suffix: ffmpeg reads it
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.unlink(missing_ok=True)
            make(tmp)
            tmp.chmod(0o755 if tmp.is_dir() else 0o644)
            tmp.rename(out)
    return out


def ffmpeg_made(name: str, args: list[str], inputs: list[Path] = ()) -> Path:
    """The file `ffmpeg -v error -y ARGS OUT` writes (made once, see `cached`); `inputs` are
    the files ARGS read."""
    def make(out: Path) -> None:
        subprocess.run(["ffmpeg", "-v", "error", "-y", *args, str(out)],
                       check=True, capture_output=True, timeout=600)
    return cached(name, args, list(inputs), make)
