//! MPEG-2 transport stream (ISO/IEC 13818-1) segments for HLS: PAT and PMT, one PES per access
//! unit, H.264/H.265 as Annex-B byte streams with an access unit delimiter and the parameter
//! sets before every sync sample, AAC as ADTS, AC-3/E-AC-3 as is, PCR on the first track.
//! TS segment N holds exactly the samples of DASH segment N. Timestamps are the presentation
//! timeline every format shares (first video frame and first unprimed audio sample at 0),
//! plus [`TIMELINE_OFFSET`], in 90 kHz units.

use std::ops::Range;

use crate::index::{Sample, TrackKind};
use crate::mp4::codec::{AacConfig, CodecConfig, SampleEntry};

/// Transport packet size.
pub const PACKET: usize = 188;
const PAT_PID: u16 = 0;
const PMT_PID: u16 = 0x1000;
/// First elementary-stream PID.
const FIRST_PID: u16 = 0x100;
const PROGRAM: u16 = 1;

/// Why a track cannot be carried in MPEG-TS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TsError {
    #[error("codec {0} cannot be carried in MPEG-TS by this origin")]
    Codec(String),
    #[error("sample {0} is malformed: {1}")]
    Sample(u32, &'static str),
}

/// Added to every timestamp (90 kHz): the presentation timeline starts 10 s in, as Apple's
/// segmenter does, so the decode times of reordered video and the primed audio samples
/// before presentation time 0 stay positive.
pub const TIMELINE_OFFSET: u64 = 10 * 90_000;

/// One track of the segment: its description and the samples with their bytes.
pub struct TsInput<'a> {
    pub entry: &'a SampleEntry,
    pub kind: TrackKind,
    pub timescale: u32,
    /// How far the track's sample times run ahead of presentation time (track timescale):
    /// see `dash::presentation_delay`.
    pub presentation_delay: i64,
    pub samples: Vec<(Sample, &'a [u8])>,
}

/// One track of a segment, without its sample bytes: what a [`TsWriter`] keeps between the
/// pieces of a segment it writes.
#[derive(Debug, Clone)]
pub struct TsTrack {
    pub entry: SampleEntry,
    pub kind: TrackKind,
    pub timescale: u32,
    /// How far the track's sample times run ahead of presentation time (track timescale).
    pub presentation_delay: i64,
    pub samples: Vec<Sample>,
    /// The caller's number for where the track's bytes are (the writer reorders tracks).
    pub source: usize,
}

/// An elementary stream of the transport stream.
#[derive(Debug, Clone)]
struct Stream {
    pid: u16,
    stream_type: u8,
    stream_id: u8,
    cc: u8,
}

fn stream_type(entry: &SampleEntry) -> Result<(u8, u8), TsError> {
    Ok(match &entry.codec {
        CodecConfig::Avc(_) => (0x1b, 0xe0),
        CodecConfig::Hevc(_) => (0x24, 0xe0),
        CodecConfig::Aac(_) => (0x0f, 0xc0),
        CodecConfig::Ac3(_) => (0x81, 0xbd),
        CodecConfig::Eac3(_) => (0x87, 0xbd),
        _ => return Err(TsError::Codec(entry.codec_string())),
    })
}

/// MPEG-2 CRC-32 (polynomial 0x04C11DB7, no reflection), for PSI sections.
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// A track time on the shared presentation timeline at 90 kHz, offset and wrapped to 33 bits.
fn to_90k(t: i64, timescale: u32) -> u64 {
    let v = i128::from(t) * 90_000 / i128::from(timescale.max(1)) + i128::from(TIMELINE_OFFSET);
    (v.max(0) as u64) & ((1 << 33) - 1)
}

/// The bytes of one PES packet in pieces, consumed front to back: the generated header, then
/// the sample's ranges (each behind a start code for video), so the packetizer copies each
/// byte once, from the source mapping straight into the segment, and nothing is allocated
/// per access unit.
struct Pieces<'p> {
    head: &'p [u8],
    data: &'p [u8],
    body: &'p [Range<usize>],
    start_codes: bool,
    /// The piece being consumed: 0 is the head, then each body range (preceded by its start
    /// code when `start_codes`).
    piece: usize,
    /// What is left of that piece.
    rest: &'p [u8],
    left: usize,
}

impl<'p> Pieces<'p> {
    fn new(
        head: &'p [u8],
        data: &'p [u8],
        body: &'p [Range<usize>],
        start_codes: bool,
    ) -> Pieces<'p> {
        let code = if start_codes { START_CODE.len() } else { 0 };
        Pieces {
            head,
            data,
            body,
            start_codes,
            piece: 0,
            rest: head,
            left: head.len() + body.iter().map(|r| r.len() + code).sum::<usize>(),
        }
    }

    /// Piece `k` (empty past the end).
    fn piece(&self, k: usize) -> &'p [u8] {
        if k == 0 {
            return self.head;
        }
        let k = k - 1;
        let (range, is_code) = if self.start_codes {
            (k / 2, k % 2 == 0)
        } else {
            (k, false)
        };
        match self.body.get(range) {
            Some(_) if is_code => &START_CODE,
            Some(r) => &self.data[r.clone()],
            None => &[],
        }
    }

    /// Moves past the next `n` bytes (at most what is left), handing each slice to `take`.
    #[inline]
    fn advance(&mut self, mut n: usize, mut take: impl FnMut(&'p [u8])) {
        n = n.min(self.left);
        self.left -= n;
        while n > 0 {
            if self.rest.is_empty() {
                self.piece += 1;
                self.rest = self.piece(self.piece);
                continue;
            }
            let (now, later) = self.rest.split_at(self.rest.len().min(n));
            take(now);
            n -= now.len();
            self.rest = later;
        }
    }

    /// Skips the next `n` bytes (at most what is left).
    fn skip(&mut self, n: usize) {
        self.advance(n, |_| {});
    }

    /// Appends the next `n` bytes (at most what is left) to `out`.
    #[inline]
    fn copy_into(&mut self, out: &mut Vec<u8>, n: usize) {
        // Most packets take their payload from inside one piece: one copy, no loop.
        if n <= self.rest.len() && n <= self.left {
            let (now, later) = self.rest.split_at(n);
            out.extend_from_slice(now);
            self.rest = later;
            self.left -= n;
            return;
        }
        self.advance(n, |slice| out.extend_from_slice(slice));
    }
}

/// Writes one TS packet carrying as much of `payload` as fits. A short payload is padded with
/// adaptation-field stuffing; `pcr` (90 kHz base) and the random-access flag go in the
/// adaptation field.
fn packet(
    out: &mut Vec<u8>,
    pid: u16,
    start: bool,
    cc: &mut u8,
    pcr: Option<u64>,
    random_access: bool,
    payload: &mut Pieces<'_>,
) {
    // A piece may begin with the rest of a header cut at another piece's limit, so `out` need
    // not start on a packet boundary: what is checked is that this packet is whole.
    let packet_start = out.len();
    // Adaptation field bytes after its length byte: flags, then the 6-byte PCR.
    let flagged = pcr.is_some() || random_access;
    let fields = if flagged {
        1 + if pcr.is_some() { 6 } else { 0 }
    } else {
        0
    };
    let room = 184 - if flagged { 1 + fields } else { 0 };
    let take = payload.left.min(room);
    let short = room - take;
    // Stuffing: an absent adaptation field grows to hold it (length byte, then flags).
    let (has_af, af_len) = match (flagged, short) {
        (true, s) => (true, fields + s),
        (false, 0) => (false, 0),
        (false, s) => (true, s - 1),
    };
    out.extend_from_slice(&[
        0x47,
        (pid >> 8) as u8 | if start { 0x40 } else { 0 },
        pid as u8,
        if has_af { 0x30 } else { 0x10 } | (*cc & 0x0f),
    ]);
    if has_af {
        out.push(af_len as u8);
        let mut written = 0;
        if af_len > 0 {
            out.push(if random_access { 0x40 } else { 0 } | if pcr.is_some() { 0x10 } else { 0 });
            written = 1;
        }
        if let Some(base) = pcr {
            out.extend_from_slice(&[
                (base >> 25) as u8,
                (base >> 17) as u8,
                (base >> 9) as u8,
                (base >> 1) as u8,
                ((base & 1) << 7) as u8 | 0x7e,
                0,
            ]);
            written += 6;
        }
        out.resize(out.len() + (af_len - written), 0xff);
    }
    payload.copy_into(out, take);
    *cc = (*cc + 1) & 0x0f;
    debug_assert_eq!(out.len() - packet_start, PACKET);
}

fn section_packet(out: &mut Vec<u8>, pid: u16, cc: &mut u8, section: &[u8]) {
    let mut payload = vec![0u8]; // pointer_field
    payload.extend_from_slice(section);
    payload.resize(184, 0xff);
    out.extend_from_slice(&[
        0x47,
        0x40 | (pid >> 8) as u8,
        pid as u8,
        0x10 | (*cc & 0x0f),
    ]);
    out.extend_from_slice(&payload);
    *cc = (*cc + 1) & 0x0f;
}

fn pat() -> Vec<u8> {
    let mut s = vec![0x00, 0xb0, 0, 0, 0x01, 0xc1, 0, 0];
    s.extend_from_slice(&PROGRAM.to_be_bytes());
    s.extend_from_slice(&(0xe000 | PMT_PID).to_be_bytes());
    finish_section(s)
}

fn pmt(streams: &[Stream]) -> Vec<u8> {
    let pcr_pid = streams.first().map_or(0x1fff, |s| s.pid);
    let mut s = vec![0x02, 0xb0, 0];
    s.extend_from_slice(&PROGRAM.to_be_bytes());
    s.extend_from_slice(&[0xc1, 0, 0]);
    s.extend_from_slice(&(0xe000 | pcr_pid).to_be_bytes());
    s.extend_from_slice(&[0xf0, 0]);
    for st in streams {
        s.push(st.stream_type);
        s.extend_from_slice(&(0xe000 | st.pid).to_be_bytes());
        s.extend_from_slice(&[0xf0, 0]);
    }
    finish_section(s)
}

/// Fills in the section length and appends the CRC.
fn finish_section(mut s: Vec<u8>) -> Vec<u8> {
    let len = s.len() - 3 + 4;
    s[1] = 0xb0 | ((len >> 8) as u8 & 0x0f);
    s[2] = len as u8;
    let crc = crc32_mpeg2(&s);
    s.extend_from_slice(&crc.to_be_bytes());
    s
}

fn timestamp(marker: u8, t: u64) -> [u8; 5] {
    [
        marker << 4 | ((t >> 29) as u8 & 0x0e) | 1,
        (t >> 22) as u8,
        ((t >> 14) as u8 & 0xfe) | 1,
        (t >> 7) as u8,
        ((t << 1) as u8 & 0xfe) | 1,
    ]
}

/// Annex-B start code written before every NAL unit.
const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// The elementary-stream bytes of one access unit, without copying the sample: the generated
/// part (access unit delimiter and parameter sets, or the ADTS header) goes to `prefix`, the
/// ranges of the sample that follow to `body`. For video each body range is a NAL unit to be
/// preceded by a start code; returns whether that is so.
fn es_parts(
    track: &TsTrack,
    sample: &Sample,
    data: &[u8],
    prefix: &mut Vec<u8>,
    body: &mut Vec<Range<usize>>,
) -> Result<bool, TsError> {
    match &track.entry.codec {
        CodecConfig::Avc(c) => {
            prefix.extend_from_slice(&[0, 0, 0, 1, 0x09, 0xf0]); // AUD
            if sample.sync {
                for ps in c.sps.iter().chain(&c.pps) {
                    prefix.extend_from_slice(&START_CODE);
                    prefix.extend_from_slice(ps);
                }
            }
            nal_units(
                data,
                usize::from(c.nal_length_size),
                sample.index,
                body,
                |t| t & 0x1f == 9,
            )?;
            Ok(true)
        }
        CodecConfig::Hevc(c) => {
            prefix.extend_from_slice(&[0, 0, 0, 1, 0x46, 0x01, 0x50]); // AUD
            if sample.sync {
                for nal_type in [32u8, 33, 34] {
                    for nal in c.nal_units(nal_type) {
                        prefix.extend_from_slice(&START_CODE);
                        prefix.extend_from_slice(nal);
                    }
                }
            }
            nal_units(
                data,
                usize::from(c.nal_length_size),
                sample.index,
                body,
                |t| (t >> 1) & 0x3f == 35,
            )?;
            Ok(true)
        }
        CodecConfig::Aac(c) => {
            prefix.extend_from_slice(&adts_header(c, sample, data.len())?);
            body.push(0..data.len());
            Ok(false)
        }
        _ => {
            body.push(0..data.len());
            Ok(false)
        }
    }
}

/// The ADTS header (ISO/IEC 13818-7 §6.2, no CRC) of one raw AAC frame of `len` bytes.
fn adts_header(c: &AacConfig, sample: &Sample, len: usize) -> Result<[u8; 7], TsError> {
    let len = len + 7;
    if len > 0x1fff {
        return Err(TsError::Sample(
            sample.index,
            "AAC frame too large for ADTS",
        ));
    }
    let profile = c.object_type.saturating_sub(1).min(3);
    let freq = adts_frequency_index(c.sample_rate);
    let ch = c.channel_configuration & 7;
    Ok([
        0xff,
        0xf1,
        profile << 6 | freq << 2 | (ch >> 2),
        (ch & 3) << 6 | (len >> 11) as u8,
        (len >> 3) as u8,
        ((len & 7) as u8) << 5 | 0x1f,
        0xfc,
    ])
}

fn syncsafe(n: u32) -> [u8; 4] {
    [
        (n >> 21) as u8 & 0x7f,
        (n >> 14) as u8 & 0x7f,
        (n >> 7) as u8 & 0x7f,
        n as u8 & 0x7f,
    ]
}

fn adts_frequency_index(rate: u32) -> u8 {
    const RATES: [u32; 13] = [
        96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
    ];
    RATES.iter().position(|&r| r == rate).unwrap_or(3) as u8
}

/// The NAL units of a length-prefixed sample as ranges of it, in-band access unit delimiters
/// left out (one is written in front already).
fn nal_units(
    data: &[u8],
    length_size: usize,
    index: u32,
    out: &mut Vec<Range<usize>>,
    is_aud: impl Fn(u8) -> bool,
) -> Result<(), TsError> {
    if !(1..=4).contains(&length_size) {
        return Err(TsError::Sample(index, "bad NAL length size"));
    }
    let mut at = 0usize;
    while at < data.len() {
        let Some(field) = data.get(at..at + length_size) else {
            return Err(TsError::Sample(index, "truncated NAL length"));
        };
        let len = field
            .iter()
            .fold(0usize, |len, &b| len << 8 | usize::from(b));
        let start = at + length_size;
        if len > data.len() - start {
            return Err(TsError::Sample(index, "NAL unit runs past the sample"));
        }
        if let Some(&first) = data.get(start) {
            if len > 0 && !is_aud(first) {
                out.push(start..start + len);
            }
        }
        at = start + len;
    }
    Ok(())
}

/// What a [`TsWriter`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsFormat {
    /// An MPEG-2 transport stream: PAT, PMT, then one PES per access unit.
    Transport,
    /// An HLS packed-audio segment (RFC 8216 §3.4): an ID3 tag whose Apple PRIV frame holds the
    /// 90 kHz timestamp of the first frame (on the TS timeline), then the AAC frames as ADTS.
    PackedAudio,
}

/// Writes a segment in pieces of bounded size, so a slow client never makes the worker hold a
/// whole segment: the caller asks which sample comes next ([`TsWriter::next`]), supplies its
/// bytes, and [`TsWriter::write`] appends output up to a limit, resuming inside an access unit
/// where the previous piece stopped. [`TsWriter::measure`] gives each access unit's output
/// length, so the total (the response's Content-Length) is known before the first byte.
#[derive(Debug, Clone)]
pub struct TsWriter {
    format: TsFormat,
    tracks: Vec<TsTrack>,
    streams: Vec<Stream>,
    /// Access units in output order: (track, sample position in the track's list).
    order: Vec<(u16, u32)>,
    header: Vec<u8>,
    /// Output bytes of the header already written.
    header_written: usize,
    /// The access unit being written and the bytes of its payload (TS: PES bytes; packed
    /// audio: ADTS bytes) already written.
    unit: usize,
    unit_written: usize,
    /// Room reused for every access unit's generated bytes and sample ranges.
    scratch: Unit,
    /// TS packets the access unit being written was measured at, and how many it has had.
    unit_packets: (usize, usize),
}

impl TsWriter {
    /// A writer for the tracks (video first in the output: it carries the PCR).
    pub fn new(mut tracks: Vec<TsTrack>, format: TsFormat) -> Result<TsWriter, TsError> {
        tracks.sort_by_key(|t| t.kind != TrackKind::Video);
        let mut streams = Vec::with_capacity(tracks.len());
        for (n, t) in tracks.iter().enumerate() {
            let (stream_type, stream_id) = stream_type(&t.entry)?;
            streams.push(Stream {
                pid: FIRST_PID + n as u16,
                stream_type,
                stream_id,
                cc: 0,
            });
        }
        let header = match format {
            TsFormat::Transport => {
                let mut out = Vec::with_capacity(2 * PACKET);
                let (mut pat_cc, mut pmt_cc) = (0u8, 0u8);
                section_packet(&mut out, PAT_PID, &mut pat_cc, &pat());
                section_packet(&mut out, PMT_PID, &mut pmt_cc, &pmt(&streams));
                out
            }
            TsFormat::PackedAudio => {
                let [track] = tracks.as_slice() else {
                    return Err(TsError::Codec("packed audio of several tracks".into()));
                };
                if !matches!(track.entry.codec, CodecConfig::Aac(_)) {
                    return Err(TsError::Codec(track.entry.codec_string()));
                }
                id3_timestamp(track)
            }
        };
        let order = output_order(&tracks);
        Ok(TsWriter {
            format,
            tracks,
            streams,
            order,
            header,
            header_written: 0,
            unit: 0,
            unit_written: 0,
            scratch: Unit::default(),
            unit_packets: (0, 0),
        })
    }

    /// How many access units the segment holds.
    pub fn access_units(&self) -> usize {
        self.order.len()
    }

    /// Access unit `i` in output order: its track (index into the writer's sorted tracks)
    /// and sample.
    pub fn access_unit(&self, i: usize) -> (usize, &Sample) {
        let (t, k) = self.order[i];
        (
            usize::from(t),
            &self.tracks[usize::from(t)].samples[k as usize],
        )
    }

    /// The writer's tracks, in output order (video first).
    pub fn tracks(&self) -> &[TsTrack] {
        &self.tracks
    }

    /// Bytes before the first access unit (PAT and PMT, or the ID3 tag).
    pub fn header_len(&self) -> usize {
        self.header.len()
    }

    /// The output length of access unit `i`, whose sample bytes are `data` (see
    /// [`TsWriter::measure_from_size`], which needs none for most video).
    pub fn measure(&mut self, i: usize, data: &[u8]) -> Result<usize, TsError> {
        if let Some(len) = self.measure_from_size(i) {
            return Ok(len);
        }
        let mut unit = std::mem::take(&mut self.scratch);
        let len = self.unit_payload(i, data, &mut unit);
        self.scratch = unit;
        let len = len?;
        Ok(match self.format {
            TsFormat::PackedAudio => len,
            TsFormat::Transport => {
                let room = first_packet_room(self.first_packet_flags(i));
                PACKET * (1 + len.saturating_sub(room).div_ceil(184))
            }
        })
    }

    /// The access unit the next [`TsWriter::write`] needs the bytes of, or `None` when only
    /// the header is left or nothing at all.
    pub fn next(&self) -> Option<(usize, &Sample)> {
        (self.unit < self.order.len()).then(|| self.access_unit(self.unit))
    }

    /// True when everything was written.
    pub fn is_done(&self) -> bool {
        self.header_written == self.header.len() && self.unit >= self.order.len()
    }

    /// Appends output until `out` holds at least `limit` bytes (TS writes whole packets, so up
    /// to one packet more) or the segment ends: the rest of the header, then the access unit
    /// [`TsWriter::next`] named, whose sample bytes are `data` (ignored when no access unit is
    /// left). Returns whether that access unit is now complete (so the caller moves on to the
    /// next one). Writes nothing when `out` is already full.
    pub fn write(&mut self, out: &mut Vec<u8>, data: &[u8], limit: usize) -> Result<bool, TsError> {
        if out.len() >= limit {
            return Ok(false);
        }
        if self.header_written < self.header.len() {
            let take = (self.header.len() - self.header_written).min(limit - out.len());
            out.extend_from_slice(&self.header[self.header_written..self.header_written + take]);
            self.header_written += take;
            if self.header_written < self.header.len() || out.len() >= limit {
                return Ok(false);
            }
        }
        if self.unit >= self.order.len() {
            return Ok(true);
        }
        let i = self.unit;
        let mut unit = std::mem::take(&mut self.scratch);
        let result = self.write_unit(i, &mut unit, out, data, limit);
        self.scratch = unit;
        result
    }

    /// [`TsWriter::write`] of access unit `i`, with `unit` as scratch room.
    fn write_unit(
        &mut self,
        i: usize,
        unit: &mut Unit,
        out: &mut Vec<u8>,
        data: &[u8],
        limit: usize,
    ) -> Result<bool, TsError> {
        self.unit_payload(i, data, unit)?;
        let mut payload = Pieces::new(&unit.head, data, &unit.body, unit.start_codes);
        payload.skip(self.unit_written);
        match self.format {
            TsFormat::PackedAudio => {
                let take = payload.left.min(limit - out.len());
                payload.copy_into(out, take);
                self.unit_written += take;
            }
            TsFormat::Transport => {
                if self.unit_written == 0 && self.unit_packets.1 == 0 {
                    let measured = self.quick_payload_len(i).unwrap_or(payload.left);
                    let room = first_packet_room(self.first_packet_flags(i));
                    self.unit_packets = (1 + measured.saturating_sub(room).div_ceil(184), 0);
                }
                let (track, sample) = self.access_unit(i);
                let sync = sample.sync && self.tracks[track].kind == TrackKind::Video;
                let index = sample.index;
                let pcr = self.pcr_of(i);
                while payload.left > 0 && out.len() < limit {
                    let first = self.unit_written == 0;
                    if !first && payload.left > 184 {
                        // A packet in the middle of the access unit: header and 184 bytes.
                        let stream = &mut self.streams[track];
                        out.extend_from_slice(&[
                            0x47,
                            (stream.pid >> 8) as u8,
                            stream.pid as u8,
                            0x10 | (stream.cc & 0x0f),
                        ]);
                        stream.cc = (stream.cc + 1) & 0x0f;
                        payload.copy_into(out, 184);
                        self.unit_written += 184;
                        self.unit_packets.1 += 1;
                        continue;
                    }
                    let before = payload.left;
                    packet(
                        out,
                        self.streams[track].pid,
                        first,
                        &mut self.streams[track].cc,
                        pcr.filter(|_| first),
                        first && sync,
                        &mut payload,
                    );
                    self.unit_written += before - payload.left;
                    self.unit_packets.1 += 1;
                }
                if payload.left == 0 {
                    let (measured, mut written) = self.unit_packets;
                    if written > measured {
                        return Err(TsError::Sample(
                            index,
                            "NAL units larger than the sample measured",
                        ));
                    }
                    // Padding to the length announced, within the piece's limit like any
                    // packet: what does not fit goes in the next piece.
                    while written < measured && out.len() < limit {
                        null_packet(out);
                        written += 1;
                    }
                    self.unit_packets.1 = written;
                    if written < measured {
                        return Ok(false);
                    }
                    self.unit_packets = (0, 0);
                }
            }
        }
        if payload.left == 0 {
            self.unit += 1;
            self.unit_written = 0;
            return Ok(true);
        }
        Ok(false)
    }

    /// The output length of access unit `i` from its sample's size alone, when its format
    /// allows: video with 4-byte NAL lengths, whose length fields each become a start code of
    /// the same size. So a segment's Content-Length is known without reading it, and its
    /// samples are read once, when written. An access unit that writes less than that (an
    /// access unit delimiter or an empty NAL unit in the sample is left out) is padded with
    /// null packets to the length announced; one whose NAL units do not parse fails the write.
    /// `None` for other formats, which [`TsWriter::measure`] sizes from their bytes.
    pub fn measure_from_size(&self, i: usize) -> Option<usize> {
        let len = self.quick_payload_len(i)?;
        let room = first_packet_room(self.first_packet_flags(i));
        Some(PACKET * (1 + len.saturating_sub(room).div_ceil(184)))
    }

    /// The payload length of access unit `i` from its size (see
    /// [`TsWriter::measure_from_size`]).
    fn quick_payload_len(&self, i: usize) -> Option<usize> {
        if self.format != TsFormat::Transport {
            return None;
        }
        let (track, sample) = self.access_unit(i);
        let t = &self.tracks[track];
        let size = sample.size as usize;
        let (prefix, body) = match &t.entry.codec {
            CodecConfig::Avc(c) if c.nal_length_size == 4 => {
                let sets: usize = if sample.sync {
                    c.sps.iter().chain(&c.pps).map(|ps| 4 + ps.len()).sum()
                } else {
                    0
                };
                (6 + sets, size)
            }
            CodecConfig::Hevc(c) if c.nal_length_size == 4 => {
                let sets: usize = if sample.sync {
                    [32u8, 33, 34]
                        .iter()
                        .flat_map(|&n| c.nal_units(n))
                        .map(|nal| 4 + nal.len())
                        .sum()
                } else {
                    0
                };
                (7 + sets, size)
            }
            _ => return None,
        };
        let (dts, pts) = self.pes_times(track, sample);
        Some(4 + 2 + 3 + pes_header_len(dts, pts) + prefix + body)
    }

    /// Decode and presentation times of a sample, 90 kHz, as its PES header carries them.
    fn pes_times(&self, track: usize, sample: &Sample) -> (u64, u64) {
        let t = &self.tracks[track];
        let decode = (sample.dts as i64).saturating_sub(t.presentation_delay);
        let dts = to_90k(decode, t.timescale);
        let pts = to_90k(decode.saturating_add(i64::from(sample.cto)), t.timescale);
        (dts, pts)
    }

    /// Adaptation-field needs of access unit `i`'s first packet: (PCR, random access).
    fn first_packet_flags(&self, i: usize) -> (bool, bool) {
        let (track, sample) = self.access_unit(i);
        (
            track == 0,
            sample.sync && self.tracks[track].kind == TrackKind::Video,
        )
    }

    /// The PCR of access unit `i`'s first packet: on the first stream, a little before decode.
    fn pcr_of(&self, i: usize) -> Option<u64> {
        let (track, sample) = self.access_unit(i);
        (track == 0).then(|| {
            let t = &self.tracks[track];
            to_90k(
                (sample.dts as i64).saturating_sub(t.presentation_delay),
                t.timescale,
            )
            .saturating_sub(9000)
        })
    }

    /// Fills `unit` with access unit `i`'s payload in pieces and returns its length.
    fn unit_payload(&self, i: usize, data: &[u8], unit: &mut Unit) -> Result<usize, TsError> {
        let (track, sample) = self.access_unit(i);
        let t = &self.tracks[track];
        if data.len() != sample.size as usize {
            return Err(TsError::Sample(
                sample.index,
                "bytes supplied do not match the sample size",
            ));
        }
        unit.head.clear();
        unit.prefix.clear();
        unit.body.clear();
        unit.start_codes = false;
        if self.format == TsFormat::PackedAudio {
            let CodecConfig::Aac(c) = &t.entry.codec else {
                return Err(TsError::Codec(t.entry.codec_string()));
            };
            unit.head
                .extend_from_slice(&adts_header(c, sample, data.len())?);
            unit.body.push(0..data.len());
            return Ok(unit.head.len() + data.len());
        }
        unit.start_codes = es_parts(t, sample, data, &mut unit.prefix, &mut unit.body)?;
        let body_len = unit
            .body
            .iter()
            .map(|b| {
                b.len()
                    + if unit.start_codes {
                        START_CODE.len()
                    } else {
                        0
                    }
            })
            .sum::<usize>();
        let es_len = unit.prefix.len() + body_len;
        let (dts, pts) = self.pes_times(track, sample);
        let head = &mut unit.head;
        head.extend_from_slice(&[0, 0, 1, self.streams[track].stream_id]);
        let header_len = pes_header_len(dts, pts);
        let pes_len = 3 + header_len + es_len;
        // Video PES may be unbounded (length 0); audio lengths fit 16 bits.
        let len_field = if pes_len > 0xffff || t.kind == TrackKind::Video {
            0
        } else {
            pes_len as u16
        };
        head.extend_from_slice(&len_field.to_be_bytes());
        head.push(0x80);
        head.push(if pts != dts { 0xc0 } else { 0x80 });
        head.push(header_len as u8);
        if pts != dts {
            head.extend_from_slice(&timestamp(3, pts));
            head.extend_from_slice(&timestamp(1, dts));
        } else {
            head.extend_from_slice(&timestamp(2, pts));
        }
        head.extend_from_slice(&unit.prefix);
        Ok(head.len() + body_len)
    }
}

/// Bytes of the PES header fields after its flags: PTS and DTS, or PTS alone.
fn pes_header_len(dts: u64, pts: u64) -> usize {
    if pts != dts {
        10
    } else {
        5
    }
}

/// A null packet (PID 0x1FFF), which decoders skip: it pads an access unit that wrote fewer
/// packets than it was measured at.
fn null_packet(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0x47, 0x1f, 0xff, 0x10]);
    out.resize(out.len() + 184, 0xff);
}

/// One access unit's payload: generated bytes, then ranges of the sample.
#[derive(Debug, Clone, Default)]
struct Unit {
    head: Vec<u8>,
    prefix: Vec<u8>,
    body: Vec<Range<usize>>,
    /// Whether each body range is a NAL unit preceded by a start code.
    start_codes: bool,
}

/// Payload bytes the first packet of an access unit carries.
fn first_packet_room((pcr, random_access): (bool, bool)) -> usize {
    if pcr || random_access {
        184 - 2 - if pcr { 6 } else { 0 }
    } else {
        184
    }
}

/// The order access units go out in: the segment opens with the video key frame (right after
/// PAT and PMT), so an I-frame playlist can point at the first bytes of the segment; after it,
/// access units in decode-time order across streams (ties: the earlier stream).
fn output_order(tracks: &[TsTrack]) -> Vec<(u16, u32)> {
    let total: usize = tracks.iter().map(|t| t.samples.len()).sum();
    let mut order = Vec::with_capacity(total);
    let mut next = vec![0usize; tracks.len()];
    if let Some(v) = tracks.first() {
        if v.kind == TrackKind::Video && !v.samples.is_empty() {
            order.push((0, 0));
            next[0] = 1;
        }
    }
    while let Some(t) = (0..tracks.len())
        .filter(|&i| next[i] < tracks[i].samples.len())
        .min_by_key(|&i| {
            let track = &tracks[i];
            i128::from(track.samples[next[i]].dts) * 90_000 / i128::from(track.timescale.max(1))
        })
    {
        order.push((t as u16, next[t] as u32));
        next[t] += 1;
    }
    order
}

/// The ID3 tag opening a packed-audio segment: an Apple PRIV frame with the 90 kHz time of
/// the first frame on the TS timeline.
fn id3_timestamp(track: &TsTrack) -> Vec<u8> {
    let first = track.samples.first().map_or(0, |s| s.dts as i64);
    let pts = to_90k(
        first.saturating_sub(track.presentation_delay),
        track.timescale,
    );
    const OWNER: &[u8] = b"com.apple.streaming.transportStreamTimestamp\0";
    let frame_len = OWNER.len() + 8;
    let mut out = Vec::with_capacity(20 + frame_len);
    // ID3v2.4 header; sizes are syncsafe (7 bits per byte), all well under 2^21 here.
    out.extend_from_slice(b"ID3\x04\x00\x00");
    out.extend_from_slice(&syncsafe((10 + frame_len) as u32));
    out.extend_from_slice(b"PRIV");
    out.extend_from_slice(&syncsafe(frame_len as u32));
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(OWNER);
    out.extend_from_slice(&pts.to_be_bytes());
    out
}

impl TsInput<'_> {
    fn track(&self) -> TsTrack {
        TsTrack {
            entry: self.entry.clone(),
            kind: self.kind,
            timescale: self.timescale,
            presentation_delay: self.presentation_delay,
            samples: self.samples.iter().map(|(s, _)| *s).collect(),
            source: 0,
        }
    }
}

/// Writes a whole segment from inputs whose bytes are all at hand.
fn write_all(inputs: &[TsInput<'_>], format: TsFormat) -> Result<Vec<u8>, TsError> {
    let mut writer = TsWriter::new(inputs.iter().map(TsInput::track).collect(), format)?;
    // The writer sorts video first; find each sorted track's input again.
    let mut sorted: Vec<&TsInput<'_>> = inputs.iter().collect();
    sorted.sort_by_key(|i| i.kind != TrackKind::Video);
    let mut total = writer.header_len();
    for i in 0..writer.access_units() {
        let (t, _) = writer.access_unit(i);
        let data = sorted[t].samples[sample_position(&writer, i)].1;
        total += writer.measure(i, data)?;
    }
    let mut out = Vec::with_capacity(total);
    while !writer.is_done() {
        let data = match writer.next() {
            Some((t, _)) => sorted[t].samples[sample_position(&writer, writer.unit)].1,
            None => &[],
        };
        writer.write(&mut out, data, usize::MAX)?;
    }
    debug_assert_eq!(out.len(), total);
    Ok(out)
}

fn sample_position(writer: &TsWriter, i: usize) -> usize {
    writer.order[i].1 as usize
}

/// Muxes the inputs into one transport-stream segment.
pub fn mux(inputs: &[TsInput<'_>]) -> Result<Vec<u8>, TsError> {
    write_all(inputs, TsFormat::Transport)
}

/// An HLS packed-audio segment of one AAC track (see [`TsFormat::PackedAudio`]).
pub fn packed_audio(input: &TsInput<'_>) -> Result<Vec<u8>, TsError> {
    write_all(std::slice::from_ref(input), TsFormat::PackedAudio)
}

/// [`key_frame_bytes`] from the key frame's size alone, when its format allows (see
/// [`TsWriter::measure_from_size`]): an I-frame playlist then reads no key frame at all,
/// which for a remote source is a request per segment saved.
pub fn key_frame_bytes_from_size(
    entry: &SampleEntry,
    kind: TrackKind,
    timescale: u32,
    presentation_delay: i64,
    sample: Sample,
) -> Result<Option<usize>, TsError> {
    let track = TsTrack {
        entry: entry.clone(),
        kind,
        timescale,
        presentation_delay,
        samples: vec![sample],
        source: 0,
    };
    let writer = TsWriter::new(vec![track], TsFormat::Transport)?;
    Ok(writer
        .measure_from_size(0)
        .map(|len| writer.header_len() + len))
}

/// Bytes from the start of a segment through its first video access unit (PAT, PMT and the
/// key frame's PES): the `EXT-X-BYTERANGE` of an I-frame playlist entry.
pub fn key_frame_bytes(input: &TsInput<'_>) -> Result<usize, TsError> {
    let Some((_, data)) = input.samples.first() else {
        return Ok(2 * PACKET);
    };
    let mut track = input.track();
    track.samples.truncate(1);
    let mut writer = TsWriter::new(vec![track], TsFormat::Transport)?;
    Ok(writer.header_len() + writer.measure(0, data)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc() {
        // The PAT of a single program at PMT PID 0x1000, as ffmpeg writes it.
        let p = pat();
        assert_eq!(
            crc32_mpeg2(&p),
            0,
            "a section with its CRC appended checks to 0"
        );
    }

    #[test]
    fn pmt_layout() {
        // table_id, length, program_number, version, section numbers, PCR PID, info length,
        // then one 5-byte entry per stream, then the CRC.
        let p = pmt(&[]);
        assert_eq!(p[0], 0x02);
        let len = (usize::from(p[1] & 0x0f) << 8) | usize::from(p[2]);
        assert_eq!(len, p.len() - 3);
        assert_eq!(&p[3..5], &PROGRAM.to_be_bytes());
        assert_eq!(p[5], 0xc1);
        assert_eq!(p.len(), 3 + 9 + 4);
        assert_eq!(crc32_mpeg2(&p), 0);
    }

    #[test]
    fn packets_are_188_bytes_and_stuffed() {
        for len in [0usize, 1, 2, 100, 182, 183, 184, 185, 400] {
            let mut out = Vec::new();
            let mut cc = 0;
            // The payload in uneven pieces, as a PES header and NAL units come.
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let cut = len / 3;
            let body = [cut..cut, cut..len];
            let mut payload = Pieces::new(&data[..cut], &data, &body, false);
            let mut first = true;
            loop {
                packet(
                    &mut out,
                    0x100,
                    first,
                    &mut cc,
                    first.then_some(1234),
                    first,
                    &mut payload,
                );
                first = false;
                if payload.left == 0 {
                    break;
                }
            }
            assert_eq!(out.len() % PACKET, 0, "{len}");
            let payload: usize = out
                .chunks(PACKET)
                .map(|p| {
                    184 - if p[3] & 0x20 != 0 {
                        1 + usize::from(p[4])
                    } else {
                        0
                    }
                })
                .sum();
            assert_eq!(payload, len, "{len}");
            let carried: Vec<u8> = out
                .chunks(PACKET)
                .flat_map(|p| {
                    let skip = 4 + if p[3] & 0x20 != 0 {
                        1 + usize::from(p[4])
                    } else {
                        0
                    };
                    p[skip..].to_vec()
                })
                .collect();
            assert_eq!(carried, data, "{len}");
        }
    }

    /// The first `n` samples of the progressive fixture's track of `kind` (its video is H.264
    /// with 4-byte NAL lengths), each passed through `alter`, as a TS input.
    fn fixture_track(
        kind: TrackKind,
        n: u32,
        presentation_delay: i64,
        alter: impl Fn(u32, Vec<u8>) -> Vec<u8>,
        f: impl FnOnce(&TsInput<'_>),
    ) {
        use crate::index::build_index;
        use crate::source::{MmapSource, Source};
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/progressive.mp4");
        let src = MmapSource::open(&path).unwrap();
        let index = build_index(&src).unwrap();
        let track = index.tracks.iter().find(|t| t.kind == kind).unwrap();
        let entry = crate::presentation::sample_entry_of(track).unwrap();
        let data: Vec<(Sample, Vec<u8>)> = track
            .samples(0..n)
            .map(|s| {
                let bytes = alter(
                    s.index,
                    src.bytes(s.offset, s.size as usize).unwrap().into_owned(),
                );
                (
                    Sample {
                        size: bytes.len() as u32,
                        ..s
                    },
                    bytes,
                )
            })
            .collect();
        f(&TsInput {
            entry: &entry,
            kind,
            timescale: track.timescale,
            presentation_delay,
            samples: data.iter().map(|(s, d)| (*s, &d[..])).collect(),
        });
    }

    fn fixture_video(
        n: u32,
        alter: impl Fn(u32, Vec<u8>) -> Vec<u8>,
        f: impl FnOnce(&TsInput<'_>),
    ) {
        fixture_track(TrackKind::Video, n, 0, alter, f);
    }

    /// The payload of every packet of `pid`, concatenated.
    fn pid_payload(ts: &[u8], pid: u16) -> Vec<u8> {
        ts.chunks(PACKET)
            .filter(|p| (u16::from(p[1] & 0x1f) << 8 | u16::from(p[2])) == pid)
            .flat_map(|p| {
                let skip = 4 + if p[3] & 0x20 != 0 {
                    1 + usize::from(p[4])
                } else {
                    0
                };
                p[skip.min(PACKET)..].to_vec()
            })
            .collect()
    }

    #[test]
    fn video_measured_from_sizes_writes_exactly_that_many_bytes() {
        let plain = std::cell::RefCell::new(Vec::new());
        fixture_video(
            30,
            |_, b| b,
            |input| {
                let writer = TsWriter::new(vec![input.track()], TsFormat::Transport).unwrap();
                let quick: Vec<Option<usize>> =
                    (0..30).map(|i| writer.quick_payload_len(i)).collect();
                assert!(
                    quick.iter().all(Option::is_some),
                    "the fixture is 4-byte NAL H.264"
                );
                // The quick lengths are what the full walk finds.
                for (i, q) in quick.iter().enumerate() {
                    let mut unit = Unit::default();
                    let full = writer
                        .unit_payload(i, input.samples[i].1, &mut unit)
                        .unwrap();
                    assert_eq!(Some(full), *q, "sample {i}");
                }
                let out = mux(std::slice::from_ref(input)).unwrap();
                assert!(
                    out.chunks(PACKET).all(|p| p[1] & 0x1f != 0x1f),
                    "no padding needed"
                );
                *plain.borrow_mut() = pid_payload(&out, FIRST_PID);
            },
        );
        // The same samples with an empty NAL unit and a (long) access unit delimiter added
        // after the first NAL unit: both are left out of the stream, so those access units
        // write less than their size says and are padded with null packets to what was
        // measured.
        let extra = |i: u32, mut b: Vec<u8>| {
            if i % 3 == 1 {
                let first = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
                let at = 4 + first;
                // An empty NAL unit, then a delimiter of 400 bytes (over two packets).
                let mut more = vec![0, 0, 0, 0, 0, 0, 1, 0x90, 0x09];
                more.resize(more.len() + 399, 0xf0);
                more.extend_from_slice(&b[at..]);
                b.truncate(at);
                b.extend_from_slice(&more);
            }
            b
        };
        fixture_video(30, extra, |input| {
            let mut writer = TsWriter::new(vec![input.track()], TsFormat::Transport).unwrap();
            let measured: usize = writer.header_len()
                + (0..30)
                    .map(|i| writer.measure(i, input.samples[i].1).unwrap())
                    .sum::<usize>();
            let out = mux(std::slice::from_ref(input)).unwrap();
            assert_eq!(out.len(), measured);
            let nulls = out
                .chunks(PACKET)
                .filter(|p| p[1] & 0x1f == 0x1f && p[2] == 0xff);
            assert!(nulls.count() >= 1);
            // The elementary stream is the very one written without the extra units.
            assert_eq!(pid_payload(&out, FIRST_PID), *plain.borrow());
        });
    }

    #[test]
    fn a_key_frame_is_sized_without_its_bytes() {
        fixture_video(
            1,
            |_, b| b,
            |input| {
                let (sample, data) = input.samples[0];
                let sized = key_frame_bytes_from_size(
                    input.entry,
                    input.kind,
                    input.timescale,
                    input.presentation_delay,
                    sample,
                )
                .unwrap();
                assert_eq!(sized, Some(key_frame_bytes(input).unwrap()));
                assert!(sized.unwrap() > data.len());
            },
        );
    }

    #[test]
    fn padding_keeps_to_the_piece_limit() {
        // Every sample grows by a long delimiter the stream leaves out: several null packets
        // per access unit, written one piece of at most two packets at a time.
        let extra = |_: u32, mut b: Vec<u8>| {
            let mut aud = vec![0, 0, 3, 0xe8, 0x09];
            aud.resize(aud.len() + 999, 0xf0);
            aud.extend_from_slice(&b);
            b = aud;
            b
        };
        fixture_video(6, extra, |input| {
            let whole = mux(std::slice::from_ref(input)).unwrap();
            let mut writer = TsWriter::new(vec![input.track()], TsFormat::Transport).unwrap();
            let mut out = Vec::new();
            while !writer.is_done() {
                let mut piece = Vec::new();
                while piece.len() < 2 * PACKET && !writer.is_done() {
                    let data = match writer.next() {
                        Some(_) => input.samples[writer.unit].1,
                        None => &[],
                    };
                    writer.write(&mut piece, data, 2 * PACKET).unwrap();
                }
                assert!(piece.len() < 3 * PACKET, "{}", piece.len());
                out.extend_from_slice(&piece);
            }
            assert_eq!(out, whole);
            assert!(whole.chunks(PACKET).filter(|p| p[1] & 0x1f == 0x1f).count() >= 6);
        });
    }

    #[test]
    fn a_sample_whose_nal_units_overrun_it_fails_the_write() {
        // The second NAL unit's length runs past the sample: measured from the size, found
        // out when written.
        let broken = |i: u32, mut b: Vec<u8>| {
            if i == 2 {
                let first = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
                let at = 4 + first;
                b.truncate(at);
                b.extend_from_slice(&[0, 0, 1, 0, 0x41, 0x9a]);
            }
            b
        };
        fixture_video(5, broken, |input| {
            let err = mux(std::slice::from_ref(input)).unwrap_err();
            assert!(matches!(err, TsError::Sample(2, _)), "{err}");
        });
    }

    /// The first `n` audio samples of the progressive fixture, as a TS input.
    fn fixture_audio(n: u32, f: impl FnOnce(&TsInput<'_>)) {
        fixture_track(TrackKind::Audio, n, 1024, |_, b| b, f);
    }

    #[test]
    fn packed_audio_is_an_id3_timestamp_then_adts_frames() {
        fixture_audio(10, |input| {
            let out = packed_audio(input).unwrap();
            assert_eq!(&out[..6], b"ID3\x04\x00\x00");
            let tag_len = 10
                + out[6..10]
                    .iter()
                    .fold(0usize, |a, &b| a << 7 | usize::from(b));
            assert_eq!(&out[10..14], b"PRIV");
            let owner = b"com.apple.streaming.transportStreamTimestamp\0";
            assert_eq!(&out[20..20 + owner.len()], owner);
            let pts = u64::from_be_bytes(out[tag_len - 8..tag_len].try_into().unwrap());
            // Sample 0 is the priming frame, 1024 samples before presentation time 0.
            let expected = TIMELINE_OFFSET - 1024 * 90_000 / u64::from(input.timescale);
            assert_eq!(pts, expected);
            // Then exactly the samples, each behind a 7-byte ADTS header giving its length.
            let mut at = tag_len;
            for (_, data) in &input.samples {
                assert_eq!(out[at], 0xff);
                assert_eq!(out[at + 1] & 0xf6, 0xf0);
                let len = (usize::from(out[at + 3] & 3) << 11)
                    | (usize::from(out[at + 4]) << 3)
                    | usize::from(out[at + 5] >> 5);
                assert_eq!(len, data.len() + 7);
                assert_eq!(&out[at + 7..at + len], *data);
                at += len;
            }
            assert_eq!(at, out.len());
        });
    }

    /// Writes the first `n` samples of each track of the progressive fixture in pieces of at
    /// most `limit` bytes, supplying each access unit's bytes when asked, as the glue does.
    fn pieces_of_fixture(n: u32, format: TsFormat, limit: usize) -> (Vec<u8>, usize, usize) {
        use crate::index::build_index;
        use crate::source::{MmapSource, Source};
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/progressive.mp4");
        let src = MmapSource::open(&path).unwrap();
        let index = build_index(&src).unwrap();
        let tracks: Vec<TsTrack> = index
            .tracks
            .iter()
            .filter(|t| format == TsFormat::Transport || t.kind == TrackKind::Audio)
            .map(|t| TsTrack {
                entry: crate::presentation::sample_entry_of(t).unwrap(),
                kind: t.kind,
                timescale: t.timescale,
                presentation_delay: 0,
                samples: t.samples(0..n).collect(),
                source: 0,
            })
            .collect();
        let mut writer = TsWriter::new(tracks, format).unwrap();
        let bytes = |s: &Sample| src.bytes(s.offset, s.size as usize).unwrap();
        let mut total = writer.header_len();
        for i in 0..writer.access_units() {
            let (_, s) = writer.access_unit(i);
            total += writer.measure(i, &bytes(s)).unwrap();
        }
        let mut out = Vec::new();
        let mut pieces = 0;
        let mut largest = 0;
        while !writer.is_done() {
            let mut piece = Vec::new();
            while piece.len() < limit && !writer.is_done() {
                let data = writer.next().map(|(_, s)| bytes(s).into_owned());
                writer
                    .write(&mut piece, data.as_deref().unwrap_or(&[]), limit)
                    .unwrap();
            }
            largest = largest.max(piece.len());
            pieces += 1;
            out.extend_from_slice(&piece);
        }
        assert_eq!(out.len(), total, "measured length");
        (out, pieces, largest)
    }

    #[test]
    fn a_segment_written_in_pieces_equals_the_whole() {
        for format in [TsFormat::Transport, TsFormat::PackedAudio] {
            let (whole, pieces, _) = pieces_of_fixture(60, format, usize::MAX);
            assert_eq!(pieces, 1);
            for limit in [PACKET, 1000, 4096, 64 * 1024] {
                let (split, pieces, largest) = pieces_of_fixture(60, format, limit);
                assert_eq!(split, whole, "{format:?} in pieces of {limit}");
                assert!(
                    pieces >= whole.len().div_ceil(limit + PACKET),
                    "{pieces} pieces"
                );
                assert!(largest < limit + PACKET, "{largest} > {limit}");
                if format == TsFormat::Transport {
                    assert_eq!(split.len() % PACKET, 0, "whole packets");
                }
            }
        }
    }

    #[test]
    fn timestamps_have_markers() {
        let t = timestamp(2, 0x1_2345_6789 & ((1 << 33) - 1));
        assert_eq!(t[0] & 1, 1);
        assert_eq!(t[2] & 1, 1);
        assert_eq!(t[4] & 1, 1);
    }
}
