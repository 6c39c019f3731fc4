"""Live channels: publishing-point folders, CMAF streams cut into init and fragments, DASH
timelines, and origins running the nginx-conf/ live examples."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET

from harness import ROOT
from helpers.media import FIXTURES, ffmpeg_made

SOURCE = FIXTURES / "progressive.mp4"  # 4 s, H.264 + AAC, 2 s GOPs


def live_dir(n, **dvr_windows: int):
    """`<root>/live`, writable by the workers (they write the archives there), with a
    publishing point `<name>.isml` of each DVR window length given."""
    d = n.root / "live"
    d.mkdir()
    d.chmod(0o777)
    for name, seconds in dvr_windows.items():
        (d / f"{name}.isml").write_text(
            '<smil xmlns="http://www.w3.org/2001/SMIL20/Language"><head>'
            f'<meta name="dvr_window_length" content="{seconds}"/></head><body/></smil>')
        (d / f"{name}.isml").chmod(0o666)
    return d


def split_cmaf(data):
    """A CMAF file as its init segment (ftyp + moov) and its fragments (moof + mdat each)."""
    boxes, at = [], 0
    while at < len(data):
        size = int.from_bytes(data[at:at + 4], "big")
        boxes.append((data[at + 4:at + 8], data[at:at + size]))
        at += size
    init = b"".join(b for t, b in boxes if t in (b"ftyp", b"moov"))
    fragments, current = [], b""
    for t, b in boxes:
        if t == b"moof":
            current = b
        elif t == b"mdat":
            fragments.append(current + b)
    return init, fragments


def cmaf_pieces():
    """The committed CMAF video fixture as an init segment and its fragments."""
    return split_cmaf((FIXTURES / "cmaf-video.cmfv").read_bytes())


def cmaf_stream(_origin=None, loops=3):
    """A CMAF video stream (init, then 2-second fragments) of the looped source, as bytes. It
    is made once and kept (helpers.media.cached); the first argument, the origin the stream is
    for, is accepted as callers pass it and not needed."""
    out = ffmpeg_made(f"cmaf-{loops}.cmfv", [
        "-stream_loop", str(loops), "-i", str(SOURCE), "-map", "0:v", "-c", "copy",
        "-movflags", "empty_moov+separate_moof+default_base_moof+cmaf+frag_keyframe",
        "-f", "mp4"], [SOURCE])
    return split_cmaf(out.read_bytes())


def timeline(mpd_text, content="video"):
    """(t, d) of every segment of the first adaptation set of `content`."""
    mpd = ET.fromstring(mpd_text)
    for s in mpd.iter("{urn:mpeg:dash:schema:mpd:2011}AdaptationSet"):
        if s.get("contentType") != content:
            continue
        out, t = [], 0
        for e in s.iter("{urn:mpeg:dash:schema:mpd:2011}S"):
            t = int(e.get("t", t))
            d = int(e.get("d"))
            for _ in range(int(e.get("r", 0)) + 1):
                out.append((t, d))
                t += d
        return out
    return []


def example_origin(make_nginx, name):
    """An origin running an nginx-conf/ live example as written (paths moved under its prefix)."""
    n = make_nginx(workers=2)
    d = live_dir(n)
    n.start_config(n.example_config(ROOT / "nginx-conf" / name, {"/var/www/live": str(d)}))
    return n, d

def shift_fragment(fragment, ticks):
    """The fragment with its tfdt moved `ticks` later."""
    at = fragment.find(b"tfdt")
    version = fragment[at + 4]
    data = bytearray(fragment)
    if version == 1:
        t = int.from_bytes(data[at + 8:at + 16], "big") + ticks
        data[at + 8:at + 16] = t.to_bytes(8, "big")
    else:
        t = int.from_bytes(data[at + 8:at + 12], "big") + ticks
        data[at + 8:at + 12] = t.to_bytes(4, "big")
    return bytes(data)


def packets(url, stream, loops=0):
    """Packet hashes (stream copy: the bytes of each sample), timestamps left out."""
    args = ["ffmpeg", "-v", "error"]
    if loops:
        args += ["-stream_loop", str(loops)]
    out = subprocess.run([*args, "-i", url, "-map", stream, "-c", "copy", "-f", "framemd5", "-"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [line.rsplit(",", 1)[1].strip() for line in out.stdout.splitlines()
            if line and not line.startswith("#")]


def _box(fourcc, body):
    return (8 + len(body)).to_bytes(4, "big") + fourcc + body


def _full_box(fourcc, version, flags, body):
    return _box(fourcc, bytes([version]) + flags.to_bytes(3, "big") + body)


def init_track(init):
    """(track ID, timescale) of the one track of an init segment."""
    tkhd = init.find(b"tkhd")
    # tkhd: version, flags, creation and modification times (4 or 8 bytes each), track ID.
    at = tkhd + 8 + (16 if init[tkhd + 4] == 1 else 8)
    track_id = int.from_bytes(init[at:at + 4], "big")
    mdhd = init.find(b"mdhd")
    at = mdhd + 8 + (16 if init[mdhd + 4] == 1 else 8)
    return track_id, int.from_bytes(init[at:at + 4], "big")


def fragment_head(init, *, start, samples, sample_size, sequence=1):
    """The `moof` and `mdat` header of a fragment of `samples` samples of `sample_size` bytes
    for the one track of `init`, one 25th of a second each, starting at `start` seconds, the
    first a sync sample; its payload (`samples * sample_size` bytes, any) follows. Ingest
    checks a fragment's boxes, not its samples' content: this makes fragments of any size
    without encoding them."""
    track_id, timescale = init_track(init)
    duration = timescale // 25
    # tfhd: default-base-is-moof, default sample flags (not sync).
    tfhd = _full_box(b"tfhd", 0, 0x020020, track_id.to_bytes(4, "big") + (0x00010000).to_bytes(4, "big"))
    tfdt = _full_box(b"tfdt", 1, 0, (start * timescale).to_bytes(8, "big"))
    # trun: data offset, first sample flags (sync), per-sample duration and size.
    entries = (duration.to_bytes(4, "big") + sample_size.to_bytes(4, "big")) * samples

    def trun(data_offset):
        return _full_box(b"trun", 0, 0x000305, samples.to_bytes(4, "big")
                         + data_offset.to_bytes(4, "big") + (0x02000000).to_bytes(4, "big") + entries)

    mfhd = _full_box(b"mfhd", 0, 0, sequence.to_bytes(4, "big"))
    moof_size = len(_box(b"moof", mfhd + _box(b"traf", tfhd + tfdt + trun(0))))
    moof = _box(b"moof", mfhd + _box(b"traf", tfhd + tfdt + trun(moof_size + 8)))
    payload = samples * sample_size
    return moof + (payload + 8).to_bytes(4, "big") + b"mdat"


def synthetic_fragment(init, *, start, size, sequence=1):
    """A whole fragment (see `fragment_head`) of about `size` bytes of payload, in 25 samples
    (one second)."""
    sample_size = max(1, size // 25)
    return fragment_head(init, start=start, samples=25, sample_size=sample_size,
                         sequence=sequence) + bytes(25 * sample_size)
