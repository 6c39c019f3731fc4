"""Synthetic live archives: a channel's records file of any length, written as the archive
writer writes it (core/src/live/archive.rs: 64-byte records, xxh3 checksum), for tests and
`scripts/bench_archive.py` that need archives longer than real time allows."""

from __future__ import annotations

import ctypes
import os
import struct
import time
from pathlib import Path

from helpers.live import shift_fragment

FLAG_SYNC = 2
# The record's chunk ends its segment (each record here is a whole segment).
FLAG_CLOSES = 16
# The newest records point at distinct fragments (a 30-second window and its margins are 21).
WINDOW = 64
# Fragments per data file of the older records (an hour of 2-second fragments).
PER_FILE = 1800

_xxhash = ctypes.CDLL("libxxhash.so.0")
_xxhash.XXH3_64bits.restype = ctypes.c_uint64
_xxhash.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_RECORD = struct.Struct("<QQQQIIqIQ")
_FIELDS = ["start", "duration", "vpos", "file_offset", "file_no", "size", "ingest_ms", "flags",
           "seq"]


def encode_record(start, duration, vpos, file_no, file_offset, size, ingest_ms, flags,
                  seq) -> bytes:
    body = _RECORD.pack(start, duration, vpos, file_offset, file_no, size, ingest_ms, flags, seq)
    return body + struct.pack("<I", _xxhash.XXH3_64bits(body, len(body)) & 0xFFFFFFFF)


def decode_record(b: bytes) -> dict:
    return dict(zip(_FIELDS, _RECORD.unpack(b[:60])))


def timescale_of(init: bytes) -> int:
    """The `mdhd` timescale of a one-track init segment."""
    at = init.find(b"mdhd")
    version = init[at + 4]
    off = at + 8 + (16 if version == 1 else 8)
    return int.from_bytes(init[off:off + 4], "big")


def lengthen(track: Path, init: bytes, fragment: bytes, count: int) -> int:
    """Replaces the records of `track` (a track directory that ingest made from `init` and the
    one fragment `fragment`, `default-base-is-moof`) by `count` records of that fragment's
    length, the newest ending now (the channel's anchor is rewritten to say so).

    The newest `WINDOW` records point at real fragments in the track's current data file:
    `fragment` with its `tfdt` moved to the record's start. The older ones point at
    `fragment` itself, in data files of `PER_FILE` fragments each (hard links of one file):
    a live manifest never reads them, a long archive has them. Returns a fragment's duration
    in ticks (the next fragment starts at `count` of them)."""
    real = decode_record((track / "records").read_bytes()[:64])
    ts = timescale_of(init)
    t0, dur, size = real["start"], real["duration"], real["size"]
    assert t0 == 0, "the fragment must be a stream's first"
    now_ms = int(time.time() * 1000)
    anchor_ms = now_ms - count * dur * 1000 // ts
    (track.parent / "epoch").write_text(str(anchor_ms))
    window_first = max(0, count - WINDOW)
    old_files = (window_first + PER_FILE - 1) // PER_FILE
    current = old_files + 1
    for p in track.glob("*.frag"):
        p.unlink()
    if old_files:
        first = track / f"{1:08}.frag"
        first.write_bytes(fragment)
        for f in range(2, old_files + 1):
            os.link(first, track / f"{f:08}.frag")
    data = bytearray()
    out = bytearray()
    for k in range(count):
        start = k * dur
        ingest_ms = anchor_ms + (start + dur) * 1000 // ts
        vpos = len(init) + k * size
        if k < window_first:
            out += encode_record(start, dur, vpos, 1 + k // PER_FILE, 0, size, ingest_ms,
                                 FLAG_SYNC | FLAG_CLOSES, k)
        else:
            offset = len(data)
            data += shift_fragment(fragment, start)
            out += encode_record(start, dur, vpos, current, offset, size, ingest_ms,
                                 FLAG_SYNC | FLAG_CLOSES, k)
    (track / f"{current:08}.frag").write_bytes(bytes(data))
    tmp = track / "records.tmp"
    tmp.write_bytes(bytes(out))
    tmp.rename(track / "records")
    for p in track.iterdir():
        p.chmod(0o666)
    return dur
