"""The index store (`origin_index_store`): media indexes kept on disk for every worker and the
next nginx. A restarted nginx answers without indexing anything (the status endpoint's
`index_builds` stays 0) and with the same bytes; large entries are mapped by every worker
(one copy in memory, not one per worker); and the store survives what happens to files on
disk: entries damaged or planted, a source replaced in place, a worker killed in the middle of
a write, a full disk, two nginx sharing the folder, a backend's objects."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from harness import wait_for
from helpers.media import FIXTURES, ISMTOOL, LADDER, ffmpeg_made, media_dir
from helpers.remote import dash_urls, hls_urls, publish, smooth_urls

SERVER = """
    location /v/ { usp_handle_ism; add_header X-Worker $pid always; }
    location = /status { origin_status; }
"""
TITLE = "/v/ladder.ism"


def store_dir(n) -> Path:
    """A folder the workers (nobody, or root) may write, inside the instance's prefix."""
    d = n.prefix / "store"
    d.mkdir(mode=0o777, exist_ok=True)
    d.chmod(0o777)
    return d


def start(n, store: Path, *, main_extra: str = "", max_size: str = "64m"):
    return n.start(SERVER, http_extra=f"origin_index_store {store} max_size={max_size};",
                   main_extra=main_extra)


def status(n) -> dict:
    r = requests.get(n.url("/status"), timeout=30)
    assert r.status_code == 200, r.text
    return json.loads(r.text)


def builds(n) -> int:
    return status(n)["index_builds"]["count"]


def entries(store: Path, suffix: str = ".idx") -> list[Path]:
    return sorted(p for p in store.glob("*/*") if p.name.endswith(suffix))


def settled(store: Path, count: int) -> list[Path]:
    """The entries, once there are `count` (workers write them in a thread of their own, after
    the response that built the index)."""
    return wait_for(lambda: len(found := entries(store)) == count and found,
                    what=f"{count} entries in the store")


def every_url(n, title: str = TITLE) -> dict[str, bytes]:
    """Every URL players fetch of `title` (DASH, HLS, Smooth), with its bytes."""
    def get(url):
        r = requests.get(url, timeout=30)
        assert r.status_code == 200, (url, r.status_code, r.text[:300])
        return r
    urls = []
    for entry, crawl in (("/.mpd", dash_urls), ("/.m3u8", hls_urls), ("/Manifest", smooth_urls)):
        urls += crawl(get, n.url(title + entry))
    return {u.replace(n.url(""), ""): get(u).content for u in sorted(set(urls))}


def restart(n, store: Path, **kw):
    n.stop()
    return start(n, store, **kw)


def test_a_restarted_nginx_answers_from_the_store_without_indexing(make_nginx):
    n = make_nginx(workers=2)
    media_dir(n, LADDER, {"ladder.ism": LADDER})
    store = store_dir(n)
    start(n, store)
    first = every_url(n)
    assert builds(n) >= len(LADDER)
    settled(store, len(LADDER))
    assert not list(store.glob("*/.tmp-*"))

    restart(n, store)
    assert every_url(n) == first
    assert builds(n) == 0
    counted = status(n)["index_store"]
    assert counted["hits"] >= len(LADDER) and counted["refused"] == 0, counted
    assert counted["writes"] == 0, counted
    # Without the store the same nginx indexes again: the store is what saved the work.
    n.stop()
    n.start(SERVER)
    assert every_url(n) == first
    assert builds(n) >= len(LADDER)


def test_damaged_foreign_and_planted_entries_are_refused_and_rebuilt(make_nginx):
    n = make_nginx()
    media_dir(n, LADDER, {"ladder.ism": LADDER})
    store = store_dir(n)
    start(n, store)
    first = every_url(n)
    paths = settled(store, len(LADDER))
    assert len(paths) >= 4
    good = {p: p.read_bytes() for p in paths}
    n.stop()
    # Truncated; bytes flipped in a table; another file's entry under this one's name; a
    # symbolic link to a file outside the store.
    truncated, flipped, foreign, linked = paths[:4]
    truncated.write_bytes(good[truncated][: len(good[truncated]) // 2])
    damaged = bytearray(good[flipped])
    damaged[-20] ^= 0xFF
    flipped.write_bytes(bytes(damaged))
    foreign.write_bytes(good[truncated])
    linked.unlink()
    linked.symlink_to("/etc/hostname")

    start(n, store)
    assert every_url(n) == first
    assert builds(n) == 4
    assert status(n)["index_store"]["refused"] == 4
    log = n.log_text()
    assert log.count("index store: refused") == 4, log[-3000:]
    for why in ("truncated entry", "checksum does not match", "another source"):
        assert why in log, why
    # Each was written again, whole: the next nginx builds nothing.
    wait_for(lambda: all(p.read_bytes() == good[p] for p in paths), what="entries rewritten")
    restart(n, store)
    assert every_url(n) == first
    assert builds(n) == 0


def test_a_source_replaced_in_place_gets_a_new_entry(make_nginx):
    n = make_nginx()
    media = media_dir(n, ["progressive.mp4", "ladder-video-360.mp4"], {})
    store = store_dir(n)
    start(n, store)
    before = requests.get(n.url("/v/title.mp4/.mpd"), timeout=30)
    assert before.status_code == 404
    (media / "title.mp4").write_bytes((FIXTURES / "progressive.mp4").read_bytes())
    (media / "title.mp4").chmod(0o644)
    a = every_url(n, "/v/title.mp4")
    settled(store, 1)
    # Rewritten in place (same inode), with other media.
    with open(media / "title.mp4", "r+b") as f:
        f.truncate(0)
        f.write((FIXTURES / "ladder-video-360.mp4").read_bytes())
    b = every_url(n, "/v/title.mp4")
    settled(store, 2)
    assert a != b
    assert "BANDWIDTH=165000" in b["/v/title.mp4/.m3u8"].decode()
    restart(n, store)
    assert every_url(n, "/v/title.mp4") == b
    assert builds(n) == 0


def test_a_worker_killed_in_the_middle_of_a_write_leaves_no_entry(make_nginx):
    """The test-hooks build pauses halfway through each write when asked; the worker is killed
    with SIGKILL then. Readers never see the half: it is a temporary file, and the next worker
    writes the entry whole."""
    n = make_nginx()
    assert "test-modules" in str(n.module), "the fault tests need the test-hooks build"
    media_dir(n, LADDER, {"ladder.ism": LADDER})
    store = store_dir(n)
    start(n, store, main_extra="env ORIGIN_TEST_INDEX_STORE_STALL_MS=3000;")
    worker = n.worker_pids()
    assert len(worker) == 1
    def first_request():
        # Answered before the write, or cut by the kill: either is fine here.
        try:
            requests.get(n.url(TITLE + "/.mpd"), timeout=30)
        except requests.RequestException:
            pass

    first = threading.Thread(target=first_request, daemon=True)
    first.start()
    wait_for(lambda: list(store.glob("*/.tmp-*")), what="a write in progress")
    os.kill(worker[0], signal.SIGKILL)
    first.join(timeout=30)
    wait_for(lambda: n.worker_pids() and n.worker_pids() != worker, what="a new worker")
    assert entries(store) == [], "a half-written entry became visible"
    assert list(store.glob("*/.tmp-*")), "the dead writer's temporary file"
    # The new worker answers (pausing in its own writes) and writes every entry whole.
    r = requests.get(n.url(TITLE + "/.mpd"), timeout=60)
    assert r.status_code == 200
    wait_for(lambda: len(entries(store)) == len(LADDER), timeout=60, what="every entry")
    n.stop()
    start(n, store)
    assert requests.get(n.url(TITLE + "/.mpd"), timeout=30).content == r.content
    assert builds(n) == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_disk_keeps_serving_and_logs_once(make_nginx):
    n = make_nginx()
    media_dir(n, LADDER + ["progressive.mp4"], {"ladder.ism": LADDER})
    store = store_dir(n)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0777", "tmpfs", str(store)],
                   check=True)
    try:
        # Fill it up.
        with open(store / "filler", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
            except OSError:
                pass
        start(n, store)
        first = every_url(n)
        assert every_url(n, "/v/progressive.mp4")
        assert entries(store) == []
        log = n.log_text()
        assert log.count("index store: cannot write") == 1, log[-3000:]
        assert "No space left on device" in log
        assert builds(n) >= len(LADDER) + 1
        assert status(n)["index_store"]["write_failures"] == 1
        n.stop()
        # Room again: the store fills as indexes are built.
        (store / "filler").unlink()
        start(n, store)
        assert every_url(n) == first
        settled(store, len(LADDER))
    finally:
        n.stop()
        subprocess.run(["umount", str(store)], check=False)


def test_two_nginx_share_one_store(make_nginx):
    a, b = make_nginx(workers=2), make_nginx(workers=2)
    for n in (a, b):
        media_dir(n, LADDER + ["progressive.mp4"], {"ladder.ism": LADDER})
    store = store_dir(a)
    start(a, store)
    start(b, store)
    results: dict[str, dict] = {}
    threads = [threading.Thread(target=lambda n=n, k=k: results.__setitem__(k, every_url(n)))
               for k, n in (("a", a), ("b", b), ("a2", a), ("b2", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results["a"] == results["b"] == results["a2"] == results["b2"]
    # The two nginx serve different copies of the media (other inodes): an entry each.
    settled(store, 2 * len(LADDER))
    assert not list(store.glob("*/.tmp-*"))
    for n in (a, b):
        restart(n, store)
        assert every_url(n) == results["a"]
        assert builds(n) == 0


@pytest.fixture(scope="module")
def long_title() -> Path:
    """A 20-minute title (25 fps video, AAC): an index of about 400 KB, mapped, not read."""
    return ffmpeg_made("store-long.mp4", [
        "-f", "lavfi", "-i", "testsrc=size=64x36:rate=25", "-f", "lavfi",
        "-i", "sine=frequency=440:sample_rate=48000", "-t", "1200", "-c:v", "libx264",
        "-preset", "ultrafast", "-g", "50", "-c:a", "aac", "-b:a", "16k",
        "-movflags", "+faststart"])


def test_every_worker_maps_the_same_entry(make_nginx, long_title):
    """With four workers the index of a large title is in memory once: each worker maps the
    same entry, shared and clean (no private copy), and holds no table of its own."""
    n = make_nginx(workers=4)
    media = media_dir(n, [], {})
    (media / "long.mp4").write_bytes(long_title.read_bytes())
    (media / "long.mp4").chmod(0o644)
    store = store_dir(n)
    start(n, store)
    seen = set()
    deadline = time.monotonic() + 60
    while len(seen) < 4 and time.monotonic() < deadline:
        r = requests.get(n.url("/v/long.mp4/.mpd"), headers={"Connection": "close"}, timeout=30)
        assert r.status_code == 200
        seen.add(int(r.headers["X-Worker"]))
    assert seen == set(n.worker_pids())
    [entry] = settled(store, 1)
    assert entry.stat().st_size > 256 << 10

    def mapping(pid: int) -> list[str] | None:
        lines = Path(f"/proc/{pid}/smaps").read_text().split("\n")
        at = [i for i, line in enumerate(lines) if line.endswith(str(entry))]
        return lines[at[0] + 1: at[0] + 20] if at else None

    def all_map() -> bool:
        # The worker that built the index swaps its copy for the entry at its next request.
        requests.get(n.url("/v/long.mp4/.m3u8"), headers={"Connection": "close"}, timeout=30)
        return all(mapping(pid) for pid in seen)

    wait_for(all_map, what="every worker mapping the entry")
    for pid in seen:
        block = mapping(pid)
        fields = dict(line.split(":", 1) for line in block if ":" in line)
        assert fields["Private_Dirty"].strip() == "0 kB", block
    # The cache's own heap for the title is small: the tables are the mapping's.
    caches = status(n)["caches"]["media_indexes"]
    assert caches["entries"] >= 3


def test_a_remote_title_is_not_read_again_after_a_restart(make_nginx):
    """`ism_proxy_pass` with a store: after a restart each object is revalidated with one byte
    (its ETag), the indexes come from the store, and no object's head or moov is read."""
    backend = make_nginx()
    publish(backend.root / "v")
    backend.start(f"access_log {backend.prefix}/logs/backend.log ranges;",
                  http_extra="log_format ranges '$uri|$http_range|$status';")
    origin = make_nginx()
    store = store_dir(origin)
    server = f"""
        location ^~ /p/ {{ usp_handle_ism; ism_proxy_pass http://127.0.0.1:{backend.port}/; }}
        location = /status {{ origin_status; }}"""
    origin.start(server, http_extra=f"origin_index_store {store};")
    log = backend.prefix / "logs" / "backend.log"

    def reads() -> list[list[str]]:
        return [line.split("|") for line in log.read_text().splitlines()]

    mpd = requests.get(origin.url("/p/v/ladder.ism/.mpd"), timeout=30)
    assert mpd.status_code == 200
    first = wait_for(lambda: len(reads()) > len(LADDER) and reads(), what="the backend's log")
    assert builds(origin) == len(LADDER)
    settled(store, len(LADDER))
    assert len(entries(store, ".url")) == len(LADDER) + 1
    origin.stop()
    count = len(first)
    origin.start(server, http_extra=f"origin_index_store {store};")
    again = requests.get(origin.url("/p/v/ladder.ism/.mpd"), timeout=30)
    assert again.content == mpd.content
    assert builds(origin) == 0
    time.sleep(0.5)
    later = reads()[count:]
    media = [r for r in later if not r[0].endswith(".ism")]
    assert sorted(r[0] for r in media) == sorted(f"/v/{f}" for f in LADDER), later
    assert all(r[1] == "bytes=0-0" for r in media), later


def test_the_store_keeps_to_its_size_limit(make_nginx, long_title):
    """Entries past `max_size` go, least recently used first (the sweep after writes)."""
    n = make_nginx()
    media = media_dir(n, [], {})
    names = [f"t{k}.mp4" for k in range(5)]
    for name in names:
        (media / name).write_bytes(long_title.read_bytes())
        (media / name).chmod(0o644)
    store = store_dir(n)
    start(n, store, max_size="1m")
    for k, name in enumerate(names):
        assert requests.get(n.url(f"/v/{name}/.mpd"), timeout=30).status_code == 200
        # Each written before the next is asked for: entries' ages are their modification
        # times, which the file system keeps to a few milliseconds.
        wait_for(lambda: status(n)["index_store"]["writes"] == k + 1, what="the write")
        time.sleep(0.05)
    entry_size = max(p.stat().st_size for p in entries(store))
    assert entry_size > 256 << 10
    # Sweeps run in the background after writes: wait until the store is within its limit.
    wait_for(lambda: sum(p.stat().st_size for p in entries(store)) <= (1 << 20),
             what="the store within max_size")
    # The title asked for last is among those kept: a request for it builds nothing.
    before = builds(n)
    n.stop()
    start(n, store, max_size="1m")
    assert requests.get(n.url(f"/v/{names[-1]}/.mpd"), timeout=30).status_code == 200
    assert builds(n) == 0
    assert requests.get(n.url(f"/v/{names[0]}/.mpd"), timeout=30).status_code == 200
    assert builds(n) == 1
    assert before == len(names)
