"""Timed metadata written here, independently of the origin's code: SCTE-35 cues made with
threefive (PyPI), carried in an ISO/IEC 23001-18 event message track (`evte`, samples of
`emib`/`emeb` boxes) or in `emsg` boxes, as the DASH-IF live media ingest specification
sends them."""

from __future__ import annotations

import base64
import struct

import threefive

SCTE35_BIN = "urn:scte:scte35:2013:bin"
SCTE35_XML_BIN = "urn:scte:scte35:2014:xml+bin"


def box(fourcc: bytes, body: bytes) -> bytes:
    return struct.pack(">I", 8 + len(body)) + fourcc + body


def full_box(fourcc: bytes, version: int, flags: int, body: bytes) -> bytes:
    return box(fourcc, struct.pack(">I", version << 24 | flags) + body)


def cstring(s: str) -> bytes:
    return s.encode() + b"\0"


# --- cues -------------------------------------------------------------------------------


def splice_insert(event_id: int, out: bool, pts: float | None = None,
                  duration: float | None = None) -> bytes:
    """A `splice_insert` section, by threefive."""
    cue = threefive.Cue()
    s = threefive.SpliceInsert()
    s.splice_event_id = event_id
    s.splice_event_cancel_indicator = False
    s.event_id_compliance_flag = True
    s.out_of_network_indicator = out
    s.program_splice_flag = True
    s.splice_immediate_flag = pts is None
    s.time_specified_flag = pts is not None
    if pts is not None:
        s.pts_time = pts
    s.duration_flag = duration is not None
    if duration is not None:
        s.break_duration = duration
        s.break_auto_return = True
    s.unique_program_id = 1
    s.avail_num = 0
    s.avails_expected = 0
    cue.command = s
    return base64.b64decode(cue.encode())


def time_signal(pts: float, segmentation_type: int, event_id: int, upid: str,
                duration: float | None = None) -> bytes:
    """A `time_signal` with one segmentation descriptor (an ad-ID UPID), by threefive."""
    cue = threefive.Cue()
    ts = threefive.TimeSignal()
    ts.time_specified_flag = True
    ts.pts_time = pts
    cue.command = ts
    d = threefive.SegmentationDescriptor()
    d.tag = 2
    d.segmentation_event_id = hex(event_id)
    d.segmentation_event_cancel_indicator = False
    d.segmentation_event_id_compliance_indicator = True
    d.program_segmentation_flag = True
    d.segmentation_duration_flag = duration is not None
    if duration is not None:
        d.segmentation_duration = duration
    d.delivery_not_restricted_flag = True
    d.segmentation_upid_type = 0x03  # Ad-ID
    d.segmentation_upid_length = len(upid)
    d.segmentation_upid = upid
    d.segmentation_type_id = segmentation_type
    d.segment_num = 1
    d.segments_expected = 1
    cue.descriptors.append(d)
    return base64.b64decode(cue.encode())


def decoded(section: bytes) -> threefive.Cue:
    cue = threefive.Cue(section)
    cue.decode()
    return cue


# --- an event message track -------------------------------------------------------------


def emib(delta: int, duration: int, event_id: int, message: bytes,
         scheme: str = SCTE35_BIN, value: str = "") -> bytes:
    return full_box(b"emib", 0, 0, struct.pack(">IqII", 0, delta, duration, event_id)
                    + cstring(scheme) + cstring(value) + message)


def emeb() -> bytes:
    return box(b"emeb", b"")


def urim_entry(uri: str) -> bytes:
    """A `urim` sample entry (ISO/IEC 14496-12 §12.3.3.2) naming the scheme of its samples."""
    return box(b"urim", bytes(6) + struct.pack(">H", 1) + full_box(b"uri ", 0, 0, cstring(uri)))


def event_track_init(timescale: int, track_id: int = 1, entry: bytes | None = None) -> bytes:
    """`ftyp` and `moov` of a fragmented timed-metadata track: an event message track
    (`evte`), or a track of another sample entry (`urim_entry`)."""
    ftyp = box(b"ftyp", b"iso6" + struct.pack(">I", 0) + b"iso6cmfc")
    matrix = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    mvhd = full_box(b"mvhd", 0, 0, struct.pack(">IIII", 0, 0, 1000, 0)
                    + struct.pack(">IH", 0x10000, 0x100) + bytes(10) + matrix + bytes(24)
                    + struct.pack(">I", track_id + 1))
    tkhd = full_box(b"tkhd", 0, 3, struct.pack(">IIIII", 0, 0, track_id, 0, 0) + bytes(8)
                    + struct.pack(">hhhH", 0, 0, 0, 0) + matrix + struct.pack(">II", 0, 0))
    mdhd = full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, timescale, 0, 0x55C4, 0))
    hdlr = full_box(b"hdlr", 0, 0, struct.pack(">I", 0) + b"meta" + bytes(12) + b"\0")
    evte = entry or box(b"evte", bytes(6) + struct.pack(">H", 1))
    stbl = box(b"stbl", full_box(b"stsd", 0, 0, struct.pack(">I", 1) + evte)
               + full_box(b"stts", 0, 0, struct.pack(">I", 0))
               + full_box(b"stsc", 0, 0, struct.pack(">I", 0))
               + full_box(b"stsz", 0, 0, struct.pack(">II", 0, 0))
               + full_box(b"stco", 0, 0, struct.pack(">I", 0)))
    dinf = box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1) + full_box(b"url ", 0, 1, b"")))
    minf = box(b"minf", full_box(b"nmhd", 0, 0, b"") + dinf + stbl)
    trak = box(b"trak", tkhd + box(b"mdia", mdhd + hdlr + minf))
    trex = full_box(b"trex", 0, 0, struct.pack(">IIIII", track_id, 1, 0, 0, 0))
    return ftyp + box(b"moov", mvhd + trak + box(b"mvex", trex))


def event_fragment(sequence: int, start: int, samples: list[tuple[int, bytes]],
                   track_id: int = 1) -> bytes:
    """`moof` + `mdat` of `samples` (duration, bytes) from `start` (track ticks)."""
    def moof(data_offset: int) -> bytes:
        trun = full_box(b"trun", 0, 0x301, struct.pack(">Ii", len(samples), data_offset)
                        + b"".join(struct.pack(">II", d, len(s)) for d, s in samples))
        traf = box(b"traf", full_box(b"tfhd", 0, 0x020000, struct.pack(">I", track_id))
                   + full_box(b"tfdt", 1, 0, struct.pack(">Q", start)) + trun)
        return box(b"moof", full_box(b"mfhd", 0, 0, struct.pack(">I", sequence)) + traf)
    size = len(moof(0))
    return moof(size + 8) + box(b"mdat", b"".join(s for _, s in samples))


def event_track(timescale: int, end: int, fragment: int,
                cues: list[tuple[int, int | None, int, bytes]]) -> tuple[bytes, list[bytes]]:
    """An event message track from 0 to `end` ticks, one sample per fragment of `fragment`
    ticks. `cues` are (start, duration or None, id, section); a cue must start on a fragment
    boundary, and is repeated (negative delta) in the samples its duration overlaps."""
    fragments = []
    for k, t in enumerate(range(0, end, fragment)):
        d = min(fragment, end - t)
        instances = []
        for start, duration, event_id, section in cues:
            if start == t or (duration and start < t < start + duration):
                instances.append(emib(start - t, duration if duration else 0xFFFFFFFF,
                                      event_id, section))
        sample = b"".join(instances) or emeb()
        fragments.append(event_fragment(k + 1, t, [(d, sample)]))
    return event_track_init(timescale), fragments


def emsg_v1(timescale: int, time: int, duration: int, event_id: int, message: bytes,
            scheme: str = SCTE35_BIN, value: str = "") -> bytes:
    return full_box(b"emsg", 1, 0, struct.pack(">IQII", timescale, time, duration, event_id)
                    + cstring(scheme) + cstring(value) + message)


TFXD = bytes.fromhex("6d1d9b0542d544e680e2141daff757b2")


def sparse_fragment(sequence: int, start: int, duration: int, sample: bytes,
                    track_id: int = 1) -> bytes:
    """A Smooth sparse-track fragment: one sample, its time in `tfxd` (no `tfdt`), as Smooth
    encoders push a SCTE-35 track (a fragment per cue, gaps between)."""
    def moof(data_offset: int) -> bytes:
        trun = full_box(b"trun", 0, 0x301, struct.pack(">IiII", 1, data_offset, duration,
                                                        len(sample)))
        tfxd = box(b"uuid", TFXD + struct.pack(">IQQ", 1 << 24, start, duration))
        traf = box(b"traf", full_box(b"tfhd", 0, 0x020000, struct.pack(">I", track_id))
                   + tfxd + trun)
        return box(b"moof", full_box(b"mfhd", 0, 0, struct.pack(">I", sequence)) + traf)
    size = len(moof(0))
    return moof(size + 8) + box(b"mdat", sample)
