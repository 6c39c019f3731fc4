"""HDS: the fragments an F4M manifest's bootstraps list."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

from helpers.media import boxes

F4M = "{http://ns.adobe.com/f4m/1.0}"


def fragment_numbers(abst: bytes) -> list[int]:
    """The fragment numbers a bootstrap (`abst` box, whole) lists, from its tables."""
    (kind, body), = boxes(abst)
    assert kind == b"abst"
    at = 4 + 4 + 1 + 4 + 8 + 8            # version/flags, version, flags, timescale, times
    at = body.index(b"\0", at) + 1         # movie identifier
    for _ in range(2):                     # server and quality entries
        count = body[at]
        at += 1
        for _ in range(count):
            at = body.index(b"\0", at) + 1
    at = body.index(b"\0", at) + 1         # DRM data
    at = body.index(b"\0", at) + 1         # metadata
    tables = {}
    for kind in (b"asrt", b"afrt"):        # each table list: a count, then the boxes
        assert body[at] == 1, kind
        size = int.from_bytes(body[at + 1:at + 5], "big")
        (found, tables[kind]), = boxes(body[at + 1:at + 1 + size])
        assert found == kind
        at += 1 + size
    asrt, afrt = tables[b"asrt"], tables[b"afrt"]
    quality = asrt[4]
    assert quality == 0
    runs = int.from_bytes(asrt[5:9], "big")
    assert runs == 1
    last = int.from_bytes(asrt[13:17], "big")
    at = 4 + 4
    assert afrt[at] == 0                   # no quality entries
    at += 1
    entries = int.from_bytes(afrt[at:at + 4], "big")
    at += 4
    first = None
    for _ in range(entries):
        number = int.from_bytes(afrt[at:at + 4], "big")
        duration = int.from_bytes(afrt[at + 12:at + 16], "big")
        at += 16
        if duration == 0:
            at += 1                        # discontinuity indicator
        elif first is None:
            first = number
    return list(range(first, last + 1))


def media_of(manifest: bytes) -> list[tuple[str, list[int]]]:
    """Each media's URL and the fragment numbers its bootstrap lists."""
    root = ET.fromstring(manifest)
    bootstraps = {b.get("id"): base64.b64decode(b.text) for b in root.iter(f"{F4M}bootstrapInfo")}
    return [(m.get("url"), fragment_numbers(bootstraps[m.get("bootstrapInfoId")]))
            for m in root.iter(f"{F4M}media")]
