//! MPEG-2 transport stream (ISO/IEC 13818-1) segments for HLS: PAT and PMT, one PES per access
//! unit, H.264/H.265 as Annex-B byte streams with an access unit delimiter and the parameter
//! sets before every sync sample, AAC as ADTS, AC-3/E-AC-3 as is, PCR on the first track.
//! Timestamps are the source's decode and presentation times at 90 kHz, so TS segment N holds
//! exactly the samples of DASH segment N.

use crate::index::{Sample, TrackKind};
use crate::mp4::codec::{CodecConfig, SampleEntry};

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

/// One track of the segment: its description and the samples with their bytes.
pub struct TsInput<'a> {
    pub entry: &'a SampleEntry,
    pub kind: TrackKind,
    pub timescale: u32,
    pub samples: Vec<(Sample, &'a [u8])>,
}

struct Stream<'a> {
    input: &'a TsInput<'a>,
    pid: u16,
    stream_type: u8,
    stream_id: u8,
    cc: u8,
    next: usize,
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

fn to_90k(t: i64, timescale: u32) -> u64 {
    let v = i128::from(t) * 90_000 / i128::from(timescale.max(1));
    (v.max(0) as u64) & ((1 << 33) - 1)
}

/// Writes one TS packet carrying as much of `payload` as fits and returns how much that was.
/// A short payload is padded with adaptation-field stuffing; `pcr` (90 kHz base) and the
/// random-access flag go in the adaptation field.
fn packet(
    out: &mut Vec<u8>,
    pid: u16,
    start: bool,
    cc: &mut u8,
    pcr: Option<u64>,
    random_access: bool,
    payload: &[u8],
) -> usize {
    // Adaptation field bytes after its length byte: flags, then the 6-byte PCR.
    let flagged = pcr.is_some() || random_access;
    let fields = if flagged {
        1 + if pcr.is_some() { 6 } else { 0 }
    } else {
        0
    };
    let room = 184 - if flagged { 1 + fields } else { 0 };
    let take = payload.len().min(room);
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
    out.extend_from_slice(&payload[..take]);
    *cc = (*cc + 1) & 0x0f;
    debug_assert_eq!(out.len() % PACKET, 0);
    take
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

fn pmt(streams: &[Stream<'_>]) -> Vec<u8> {
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

/// The elementary-stream bytes of one access unit.
fn access_unit(
    stream: &Stream<'_>,
    sample: &Sample,
    data: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), TsError> {
    match &stream.input.entry.codec {
        CodecConfig::Avc(c) => {
            out.extend_from_slice(&[0, 0, 0, 1, 0x09, 0xf0]); // AUD
            if sample.sync {
                for ps in c.sps.iter().chain(&c.pps) {
                    out.extend_from_slice(&[0, 0, 0, 1]);
                    out.extend_from_slice(ps);
                }
            }
            nal_units(
                data,
                usize::from(c.nal_length_size),
                sample.index,
                out,
                |t| t & 0x1f == 9,
            )
        }
        CodecConfig::Hevc(c) => {
            out.extend_from_slice(&[0, 0, 0, 1, 0x46, 0x01, 0x50]); // AUD
            if sample.sync {
                for nal_type in [32u8, 33, 34] {
                    for nal in c.nal_units(nal_type) {
                        out.extend_from_slice(&[0, 0, 0, 1]);
                        out.extend_from_slice(nal);
                    }
                }
            }
            nal_units(
                data,
                usize::from(c.nal_length_size),
                sample.index,
                out,
                |t| (t >> 1) & 0x3f == 35,
            )
        }
        CodecConfig::Aac(c) => {
            let len = data.len() + 7;
            if len > 0x1fff {
                return Err(TsError::Sample(
                    sample.index,
                    "AAC frame too large for ADTS",
                ));
            }
            let profile = c.object_type.saturating_sub(1).min(3);
            let freq = adts_frequency_index(c.sample_rate);
            let ch = c.channel_configuration & 7;
            out.extend_from_slice(&[
                0xff,
                0xf1,
                profile << 6 | freq << 2 | (ch >> 2),
                (ch & 3) << 6 | (len >> 11) as u8,
                (len >> 3) as u8,
                ((len & 7) as u8) << 5 | 0x1f,
                0xfc,
            ]);
            out.extend_from_slice(data);
            Ok(())
        }
        _ => {
            out.extend_from_slice(data);
            Ok(())
        }
    }
}

fn adts_frequency_index(rate: u32) -> u8 {
    const RATES: [u32; 13] = [
        96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
    ];
    RATES.iter().position(|&r| r == rate).unwrap_or(3) as u8
}

/// Length-prefixed NAL units → Annex-B, dropping in-band access unit delimiters (one is
/// written in front already).
fn nal_units(
    mut data: &[u8],
    length_size: usize,
    index: u32,
    out: &mut Vec<u8>,
    is_aud: impl Fn(u8) -> bool,
) -> Result<(), TsError> {
    if !(1..=4).contains(&length_size) {
        return Err(TsError::Sample(index, "bad NAL length size"));
    }
    while !data.is_empty() {
        if data.len() < length_size {
            return Err(TsError::Sample(index, "truncated NAL length"));
        }
        let mut len = 0usize;
        for &b in &data[..length_size] {
            len = len << 8 | usize::from(b);
        }
        let rest = &data[length_size..];
        if len > rest.len() {
            return Err(TsError::Sample(index, "NAL unit runs past the sample"));
        }
        let nal = &rest[..len];
        if let Some(&first) = nal.first() {
            if !is_aud(first) {
                out.extend_from_slice(&[0, 0, 0, 1]);
                out.extend_from_slice(nal);
            }
        }
        data = &rest[len..];
    }
    Ok(())
}

/// Muxes the inputs into one transport-stream segment.
pub fn mux(inputs: &[TsInput<'_>]) -> Result<Vec<u8>, TsError> {
    let mut streams: Vec<Stream<'_>> = Vec::new();
    // Video first: it carries the PCR.
    let mut order: Vec<&TsInput<'_>> = inputs.iter().collect();
    order.sort_by_key(|i| i.kind != TrackKind::Video);
    for (n, input) in order.into_iter().enumerate() {
        let (stream_type, stream_id) = stream_type(input.entry)?;
        streams.push(Stream {
            input,
            pid: FIRST_PID + n as u16,
            stream_type,
            stream_id,
            cc: 0,
            next: 0,
        });
    }
    let total: usize = inputs
        .iter()
        .map(|i| i.samples.iter().map(|(_, d)| d.len() + 64).sum::<usize>())
        .sum();
    let mut out = Vec::with_capacity(total + total / 184 * 4 + 2 * PACKET);
    let (mut pat_cc, mut pmt_cc) = (0u8, 0u8);
    section_packet(&mut out, PAT_PID, &mut pat_cc, &pat());
    section_packet(&mut out, PMT_PID, &mut pmt_cc, &pmt(&streams));

    let mut es = Vec::new();
    let mut pes = Vec::new();
    // Access units in decode-time order across streams.
    // The segment opens with the video key frame (PAT, PMT, then its PES), so an I-frame
    // playlist can point at the first bytes of the segment; after it, decode-time order.
    let next_stream = |streams: &[Stream<'_>]| {
        if let Some(v) = streams.first() {
            if v.input.kind == TrackKind::Video && v.next == 0 && !v.input.samples.is_empty() {
                return Some(0);
            }
        }
        (0..streams.len())
            .filter(|&i| streams[i].next < streams[i].input.samples.len())
            .min_by_key(|&i| {
                let s = &streams[i];
                let (sample, _) = &s.input.samples[s.next];
                i128::from(sample.dts) * 90_000 / i128::from(s.input.timescale.max(1))
            })
    };
    while let Some(si) = next_stream(&streams) {
        let st = &mut streams[si];
        let (sample, data) = st.input.samples[st.next];
        st.next += 1;
        es.clear();
        access_unit(st, &sample, data, &mut es)?;
        let ts = st.input.timescale;
        let dts = to_90k(sample.dts as i64, ts);
        let pts = to_90k(sample.dts as i64 + i64::from(sample.cto), ts);
        pes.clear();
        pes.extend_from_slice(&[0, 0, 1, st.stream_id]);
        let header_len: usize = if pts != dts { 10 } else { 5 };
        let pes_len = 3 + header_len + es.len();
        // Video PES may be unbounded (length 0); audio lengths fit 16 bits.
        let len_field = if pes_len > 0xffff || st.input.kind == TrackKind::Video {
            0
        } else {
            pes_len as u16
        };
        pes.extend_from_slice(&len_field.to_be_bytes());
        pes.push(0x80);
        pes.push(if pts != dts { 0xc0 } else { 0x80 });
        pes.push(header_len as u8);
        if pts != dts {
            pes.extend_from_slice(&timestamp(3, pts));
            pes.extend_from_slice(&timestamp(1, dts));
        } else {
            pes.extend_from_slice(&timestamp(2, pts));
        }
        pes.extend_from_slice(&es);
        let pcr = (si == 0).then(|| dts.saturating_sub(9000)); // PCR a little before decode
        let mut first = true;
        let mut rest: &[u8] = &pes;
        while !rest.is_empty() {
            let st = &mut streams[si];
            let random_access = first && sample.sync && st.input.kind == TrackKind::Video;
            let took = packet(
                &mut out,
                st.pid,
                first,
                &mut st.cc,
                pcr.filter(|_| first),
                random_access,
                rest,
            );
            rest = &rest[took..];
            first = false;
        }
    }
    Ok(out)
}

/// Bytes from the start of a segment through its first video access unit (PAT, PMT and the
/// key frame's PES): the `EXT-X-BYTERANGE` of an I-frame playlist entry.
pub fn key_frame_bytes(input: &TsInput<'_>) -> Result<usize, TsError> {
    let single = TsInput {
        entry: input.entry,
        kind: input.kind,
        timescale: input.timescale,
        samples: input.samples.iter().take(1).copied().collect(),
    };
    Ok(mux(std::slice::from_ref(&single))?.len())
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
            let data = vec![7u8; len];
            let mut rest: &[u8] = &data;
            let mut first = true;
            loop {
                let took = packet(
                    &mut out,
                    0x100,
                    first,
                    &mut cc,
                    first.then_some(1234),
                    first,
                    rest,
                );
                rest = &rest[took..];
                first = false;
                if rest.is_empty() {
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
