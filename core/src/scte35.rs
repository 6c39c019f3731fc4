//! SCTE-35 splice information (ANSI/SCTE 35): the cues an encoder sends to mark ad breaks and
//! programme boundaries. A cue travels as a `splice_info_section` (in an `emsg`, an event
//! message track, or a Smooth sparse track); the origin checks it whole (lengths, CRC) before
//! anything is archived, reads what manifests need from it (the splice time, the break's
//! duration, whether it leaves or returns to the network, segmentation types), and keeps its
//! bytes as they came: manifests and in-band events carry the encoder's section unchanged.

use std::fmt;

/// 33-bit PTS arithmetic wraps here.
const PTS_MODULO: u64 = 1 << 33;

/// One parsed `splice_info_section`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpliceInfo {
    /// Added to every PTS of the section (33 bits, 90 kHz).
    pub pts_adjustment: u64,
    /// The section's command is encrypted: only its header could be read.
    pub encrypted: bool,
    /// Authorization tier (12 bits; 0xFFF: none).
    pub tier: u16,
    pub command: SpliceCommand,
    pub descriptors: Vec<SpliceDescriptor>,
}

/// What the section asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpliceCommand {
    /// `splice_null` (a heartbeat).
    Null,
    /// `splice_schedule`: events far ahead; kept, not interpreted.
    Schedule,
    /// `splice_insert`: leave for or return from a break.
    Insert(SpliceInsert),
    /// `time_signal`: a time, whose meaning its segmentation descriptors give.
    TimeSignal { pts: Option<u64> },
    /// `bandwidth_reservation`.
    BandwidthReservation,
    /// `private_command`, by its identifier.
    Private { identifier: u32 },
    /// An encrypted command, or one of a type this parser does not know.
    Other { command_type: u8 },
}

/// A `splice_insert` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpliceInsert {
    pub event_id: u32,
    /// Cancels the event `event_id` announced before: nothing else is set.
    pub cancel: bool,
    /// Leaving the network feed for a break (else returning from one).
    pub out_of_network: bool,
    /// Splice at once rather than at `pts`.
    pub immediate: bool,
    /// The program's splice time (90 kHz, before `pts_adjustment`); `None`: immediate, or a
    /// per-component splice.
    pub pts: Option<u64>,
    pub break_duration: Option<BreakDuration>,
    pub unique_program_id: u16,
    pub avail_num: u8,
    pub avails_expected: u8,
}

/// How long a break lasts (90 kHz), and whether the return is automatic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakDuration {
    pub auto_return: bool,
    pub duration: u64,
}

/// A splice descriptor, kept byte for byte (`bytes`: tag, length and body as sent), with the
/// segmentation descriptor's fields read out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpliceDescriptor {
    pub tag: u8,
    /// 'CUEI' for SCTE's own descriptors.
    pub identifier: u32,
    pub bytes: Vec<u8>,
    pub segmentation: Option<Segmentation>,
}

/// The fields of a `segmentation_descriptor` (tag 2) that manifests use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segmentation {
    pub event_id: u32,
    pub cancel: bool,
    /// 90 kHz ticks.
    pub duration: Option<u64>,
    pub upid_type: u8,
    pub upid: Vec<u8>,
    /// `segmentation_type_id` (0x22 break start, 0x23 break end, 0x34 / 0x35 provider
    /// placement opportunity start / end, …).
    pub type_id: u8,
    pub segment_num: u8,
    pub segments_expected: u8,
}

/// The 'CUEI' identifier of SCTE-35's own descriptors.
pub const CUEI: u32 = u32::from_be_bytes(*b"CUEI");

/// Why a section was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scte35Error {
    /// Fewer bytes than the part being read needs.
    Truncated(&'static str),
    /// `table_id` is not 0xFC.
    NotSpliceInfo(u8),
    /// `section_length` disagrees with the bytes given.
    Length { declared: usize, given: usize },
    /// The CRC_32 does not match the section.
    Crc { stated: u32, computed: u32 },
    /// A field breaks the standard's rules.
    Invalid(&'static str),
}

impl fmt::Display for Scte35Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scte35Error::Truncated(what) => write!(f, "SCTE-35 section ends inside its {what}"),
            Scte35Error::NotSpliceInfo(id) => {
                write!(
                    f,
                    "not an SCTE-35 splice_info_section (table_id 0x{id:02X})"
                )
            }
            Scte35Error::Length { declared, given } => write!(
                f,
                "SCTE-35 section_length says {declared} bytes, {given} were given"
            ),
            Scte35Error::Crc { stated, computed } => write!(
                f,
                "SCTE-35 CRC_32 0x{stated:08X} does not match the section (0x{computed:08X})"
            ),
            Scte35Error::Invalid(what) => write!(f, "SCTE-35 section: {what}"),
        }
    }
}

impl std::error::Error for Scte35Error {}

/// A big-endian bit reader over a byte slice.
struct Bits<'a> {
    data: &'a [u8],
    /// Position in bits.
    at: usize,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Bits { data, at: 0 }
    }

    /// The next `n` bits (at most 64), as a number.
    fn read(&mut self, n: usize, what: &'static str) -> Result<u64, Scte35Error> {
        if self.at + n > self.data.len() * 8 {
            return Err(Scte35Error::Truncated(what));
        }
        let mut v = 0u64;
        for _ in 0..n {
            let byte = self.data[self.at / 8];
            let bit = (byte >> (7 - self.at % 8)) & 1;
            v = v << 1 | u64::from(bit);
            self.at += 1;
        }
        Ok(v)
    }

    fn flag(&mut self, what: &'static str) -> Result<bool, Scte35Error> {
        Ok(self.read(1, what)? == 1)
    }

    fn skip(&mut self, n: usize, what: &'static str) -> Result<(), Scte35Error> {
        self.read(n.min(64), what)?;
        if n > 64 {
            self.skip(n - 64, what)?;
        }
        Ok(())
    }

    /// The next `n` whole bytes (the reader is on a byte boundary).
    fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Scte35Error> {
        debug_assert_eq!(self.at % 8, 0);
        let from = self.at / 8;
        let bytes = self
            .data
            .get(from..from + n)
            .ok_or(Scte35Error::Truncated(what))?;
        self.at += n * 8;
        Ok(bytes)
    }

    fn byte_position(&self) -> usize {
        self.at / 8
    }
}

/// CRC-32 of MPEG-2 sections (polynomial 0x04C11DB7, initial value all ones, no reflection,
/// no final inversion): a whole section, its CRC included, sums to 0.
pub fn crc32_mpeg2(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                crc << 1 ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Reads and checks a whole `splice_info_section`: `bytes` must be exactly the section.
pub fn parse(bytes: &[u8]) -> Result<SpliceInfo, Scte35Error> {
    let mut b = Bits::new(bytes);
    let table_id = b.read(8, "header")? as u8;
    if table_id != 0xFC {
        return Err(Scte35Error::NotSpliceInfo(table_id));
    }
    if b.flag("header")? {
        return Err(Scte35Error::Invalid("section_syntax_indicator is set"));
    }
    b.skip(3, "header")?; // private_indicator, sap_type
    let section_length = b.read(12, "header")? as usize;
    if section_length + 3 != bytes.len() {
        return Err(Scte35Error::Length {
            declared: section_length + 3,
            given: bytes.len(),
        });
    }
    // The CRC covers the whole section: checked before anything else is believed.
    let (body, crc) = bytes.split_at(bytes.len().saturating_sub(4));
    if crc.len() != 4 {
        return Err(Scte35Error::Truncated("CRC_32"));
    }
    let stated = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let computed = crc32_mpeg2(body);
    if stated != computed {
        return Err(Scte35Error::Crc { stated, computed });
    }
    let protocol_version = b.read(8, "header")?;
    if protocol_version != 0 {
        return Err(Scte35Error::Invalid("protocol_version is not 0"));
    }
    let encrypted = b.flag("header")?;
    b.skip(6, "header")?; // encryption_algorithm
    let pts_adjustment = b.read(33, "header")?;
    b.skip(8, "header")?; // cw_index
    let tier = b.read(12, "header")? as u16;
    let command_length = b.read(12, "header")? as usize;
    let command_type = b.read(8, "splice command")? as u8;
    let command_start = b.byte_position();
    let command = if encrypted {
        SpliceCommand::Other { command_type }
    } else {
        read_command(&mut b, command_type)?
    };
    // 0xFFF: a legacy length left unset; otherwise the command must fill it exactly.
    if command_length != 0xFFF && !encrypted {
        let used = b.byte_position() - command_start;
        if used != command_length {
            return Err(Scte35Error::Invalid(
                "splice_command_length disagrees with the command",
            ));
        }
    } else if encrypted {
        if command_length == 0xFFF {
            return Err(Scte35Error::Invalid(
                "an encrypted command without its length",
            ));
        }
        b.bytes(command_length, "splice command")?;
    }
    let descriptors = if encrypted {
        Vec::new()
    } else {
        let loop_length = b.read(16, "descriptor loop")? as usize;
        let loop_bytes = b.bytes(loop_length, "descriptor loop")?;
        read_descriptors(loop_bytes)?
    };
    if !encrypted && b.byte_position() != body.len() {
        return Err(Scte35Error::Invalid("bytes after the descriptors"));
    }
    Ok(SpliceInfo {
        pts_adjustment,
        encrypted,
        tier,
        command,
        descriptors,
    })
}

fn read_command(b: &mut Bits<'_>, command_type: u8) -> Result<SpliceCommand, Scte35Error> {
    Ok(match command_type {
        0x00 => SpliceCommand::Null,
        0x04 => {
            // A schedule's events are read only to find where the command ends.
            let count = b.read(8, "splice_schedule")?;
            for _ in 0..count {
                b.skip(32, "splice_schedule")?;
                let cancel = b.flag("splice_schedule")?;
                b.skip(7, "splice_schedule")?;
                if !cancel {
                    b.skip(1, "splice_schedule")?;
                    let program = b.flag("splice_schedule")?;
                    let duration = b.flag("splice_schedule")?;
                    b.skip(5, "splice_schedule")?;
                    if program {
                        b.skip(32, "splice_schedule")?;
                    } else {
                        let components = b.read(8, "splice_schedule")?;
                        b.skip(40 * components as usize, "splice_schedule")?;
                    }
                    if duration {
                        b.skip(40, "splice_schedule")?;
                    }
                    b.skip(32, "splice_schedule")?;
                }
            }
            SpliceCommand::Schedule
        }
        0x05 => SpliceCommand::Insert(read_insert(b)?),
        0x06 => SpliceCommand::TimeSignal {
            pts: read_splice_time(b, "time_signal")?,
        },
        0x07 => SpliceCommand::BandwidthReservation,
        0xFF => SpliceCommand::Private {
            identifier: b.read(32, "private_command")? as u32,
        },
        _ => return Err(Scte35Error::Invalid("an unknown splice_command_type")),
    })
}

/// `splice_time()`: the PTS when `time_specified_flag` is set.
fn read_splice_time(b: &mut Bits<'_>, what: &'static str) -> Result<Option<u64>, Scte35Error> {
    if b.flag(what)? {
        b.skip(6, what)?;
        Ok(Some(b.read(33, what)?))
    } else {
        b.skip(7, what)?;
        Ok(None)
    }
}

fn read_insert(b: &mut Bits<'_>) -> Result<SpliceInsert, Scte35Error> {
    const W: &str = "splice_insert";
    let event_id = b.read(32, W)? as u32;
    let cancel = b.flag(W)?;
    b.skip(7, W)?;
    let mut insert = SpliceInsert {
        event_id,
        cancel,
        out_of_network: false,
        immediate: false,
        pts: None,
        break_duration: None,
        unique_program_id: 0,
        avail_num: 0,
        avails_expected: 0,
    };
    if cancel {
        return Ok(insert);
    }
    insert.out_of_network = b.flag(W)?;
    let program = b.flag(W)?;
    let duration = b.flag(W)?;
    insert.immediate = b.flag(W)?;
    b.skip(4, W)?; // event_id_compliance_flag, reserved
    if program && !insert.immediate {
        insert.pts = read_splice_time(b, W)?;
    }
    if !program {
        let components = b.read(8, W)?;
        for _ in 0..components {
            b.skip(8, W)?;
            if !insert.immediate {
                read_splice_time(b, W)?;
            }
        }
    }
    if duration {
        let auto_return = b.flag(W)?;
        b.skip(6, W)?;
        insert.break_duration = Some(BreakDuration {
            auto_return,
            duration: b.read(33, W)?,
        });
    }
    insert.unique_program_id = b.read(16, W)? as u16;
    insert.avail_num = b.read(8, W)? as u8;
    insert.avails_expected = b.read(8, W)? as u8;
    Ok(insert)
}

fn read_descriptors(mut data: &[u8]) -> Result<Vec<SpliceDescriptor>, Scte35Error> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let [tag, length, ..] = *data else {
            return Err(Scte35Error::Truncated("splice descriptor"));
        };
        let end = 2 + usize::from(length);
        let whole = data
            .get(..end)
            .ok_or(Scte35Error::Truncated("splice descriptor"))?;
        let body = &whole[2..];
        let identifier = body
            .get(..4)
            .map(|i| u32::from_be_bytes([i[0], i[1], i[2], i[3]]))
            .ok_or(Scte35Error::Truncated("splice descriptor identifier"))?;
        let segmentation = if tag == 0x02 && identifier == CUEI {
            Some(read_segmentation(&body[4..])?)
        } else {
            None
        };
        out.push(SpliceDescriptor {
            tag,
            identifier,
            bytes: whole.to_vec(),
            segmentation,
        });
        data = &data[end..];
    }
    Ok(out)
}

fn read_segmentation(body: &[u8]) -> Result<Segmentation, Scte35Error> {
    const W: &str = "segmentation_descriptor";
    let mut b = Bits::new(body);
    let event_id = b.read(32, W)? as u32;
    let cancel = b.flag(W)?;
    b.skip(7, W)?;
    let mut s = Segmentation {
        event_id,
        cancel,
        duration: None,
        upid_type: 0,
        upid: Vec::new(),
        type_id: 0,
        segment_num: 0,
        segments_expected: 0,
    };
    if cancel {
        return Ok(s);
    }
    let program = b.flag(W)?;
    let has_duration = b.flag(W)?;
    b.skip(6, W)?; // delivery restrictions
    if !program {
        let components = b.read(8, W)?;
        b.skip(48 * components as usize, W)?;
    }
    if has_duration {
        s.duration = Some(b.read(40, W)?);
    }
    s.upid_type = b.read(8, W)? as u8;
    let upid_length = b.read(8, W)? as usize;
    s.upid = b.bytes(upid_length, W)?.to_vec();
    s.type_id = b.read(8, W)? as u8;
    s.segment_num = b.read(8, W)? as u8;
    s.segments_expected = b.read(8, W)? as u8;
    // Sub-segment fields follow for some types (from SCTE 35 2016), when the descriptor's
    // length leaves room for them: nothing here reads them, the bytes are kept.
    Ok(s)
}

/// A `splice_insert` section (no descriptors, PTS adjustment 0, no tier): leaving the network
/// (`out`) or returning to it, at `pts` (90 kHz; `None`: immediately), with a break of
/// `duration` (90 kHz, auto-return) when given. What an operator's cue list asks for when it
/// has no encoder-made cue to carry.
pub fn splice_insert_section(
    event_id: u32,
    out: bool,
    pts: Option<u64>,
    duration: Option<u64>,
) -> Vec<u8> {
    let mut command = Vec::with_capacity(20);
    command.extend(event_id.to_be_bytes());
    command.push(0x7F); // not cancelled, reserved bits
    let flags = (u8::from(out) << 7)
        | 0x40 // program splice
        | (u8::from(duration.is_some()) << 5)
        | (u8::from(pts.is_none()) << 4)
        | 0x0F;
    command.push(flags);
    if let Some(pts) = pts {
        let pts = pts % PTS_MODULO;
        command.push(0xFE | (pts >> 32) as u8);
        command.extend((pts as u32).to_be_bytes());
    }
    if let Some(d) = duration {
        let d = d & ((1 << 33) - 1);
        command.push(0x80 | 0x7E | (d >> 32) as u8); // auto_return, reserved
        command.extend((d as u32).to_be_bytes());
    }
    command.extend([0x00, 0x01, 0x00, 0x00]); // unique_program_id 1, avail 0 of 0
    let mut s = vec![0xFC, 0, 0, 0x00, 0, 0, 0, 0, 0, 0x00, 0xFF];
    // tier 0xFFF, then the 12-bit command length.
    let length = command.len();
    s.push(0xF0 | (length >> 8) as u8);
    s.push(length as u8);
    s.push(0x05);
    s.extend(command);
    s.extend([0x00, 0x00]); // descriptor_loop_length
    let section_length = s.len() - 3 + 4;
    s[1] = 0x30 | (section_length >> 8) as u8 & 0x0F;
    s[2] = section_length as u8;
    let crc = crc32_mpeg2(&s);
    s.extend(crc.to_be_bytes());
    s
}

/// The XML namespace of SCTE-35 signals (the 2016 schema), which SCTE 214-1's `xml+bin`
/// messages (`urn:scte:scte35:2014:xml+bin`) and DASH `EventStream`s use.
pub const XML_NAMESPACE: &str = "http://www.scte.org/schemas/35/2016";

/// The section an `xml+bin` message carries: the base64 text of its `Binary` element
/// (whatever the namespace prefix), checked as [`parse`] checks a section.
pub fn section_of_xml_bin(message: &[u8]) -> Result<Vec<u8>, Scte35Error> {
    use quick_xml::events::Event;
    let text = std::str::from_utf8(message)
        .map_err(|_| Scte35Error::Invalid("an xml+bin message that is not UTF-8"))?;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut in_binary = false;
    let mut binary = String::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) if e.local_name().as_ref() == b"Binary" => in_binary = true,
            Ok(Event::End(e)) if in_binary && e.local_name().as_ref() == b"Binary" => break,
            Ok(Event::Text(t)) if in_binary => {
                binary.push_str(&t.unescape().map_err(|_| {
                    Scte35Error::Invalid("an xml+bin Binary that does not unescape")
                })?)
            }
            Ok(Event::CData(t)) if in_binary => {
                binary.push_str(&String::from_utf8_lossy(t.as_ref()));
            }
            Ok(Event::Eof) => {
                return Err(Scte35Error::Invalid(
                    "an xml+bin message without a Binary element",
                ))
            }
            Ok(_) => {}
            Err(_) => return Err(Scte35Error::Invalid("an xml+bin message that is not XML")),
        }
    }
    let compact: String = binary.split_whitespace().collect();
    let section = crate::base64::decode(&compact)
        .ok_or(Scte35Error::Invalid("an xml+bin Binary that is not base64"))?;
    parse(&section)?;
    Ok(section)
}

/// The `xml+bin` form of a section: a `Signal` holding it in base64.
pub fn xml_bin_of(section: &[u8]) -> String {
    format!(
        "<Signal xmlns=\"{XML_NAMESPACE}\"><Binary>{}</Binary></Signal>",
        crate::base64::encode(section)
    )
}

impl SpliceInfo {
    /// The splice time in 90 kHz ticks, `pts_adjustment` applied (33-bit wrap); `None` for an
    /// immediate splice or a command without a time.
    pub fn splice_pts(&self) -> Option<u64> {
        let pts = match &self.command {
            SpliceCommand::Insert(i) => i.pts?,
            SpliceCommand::TimeSignal { pts } => (*pts)?,
            _ => return None,
        };
        Some((pts + self.pts_adjustment) % PTS_MODULO)
    }

    /// How long the break or segment it starts lasts, 90 kHz ticks: a `splice_insert`'s break
    /// duration, else the first segmentation descriptor's duration.
    pub fn duration(&self) -> Option<u64> {
        if let SpliceCommand::Insert(SpliceInsert {
            break_duration: Some(d),
            ..
        }) = &self.command
        {
            return Some(d.duration);
        }
        self.descriptors
            .iter()
            .filter_map(|d| d.segmentation.as_ref())
            .find_map(|s| s.duration)
    }

    /// Whether the cue starts a break (leaves the network feed): a `splice_insert` out of the
    /// network, or a `time_signal` with a segmentation type that starts something.
    pub fn starts_break(&self) -> bool {
        match &self.command {
            SpliceCommand::Insert(i) => !i.cancel && i.out_of_network,
            SpliceCommand::TimeSignal { .. } => self
                .descriptors
                .iter()
                .filter_map(|d| d.segmentation.as_ref())
                .any(|s| !s.cancel && is_start_type(s.type_id)),
            _ => false,
        }
    }

    /// Whether the cue ends a break (returns to the network feed).
    pub fn ends_break(&self) -> bool {
        match &self.command {
            SpliceCommand::Insert(i) => !i.cancel && !i.out_of_network,
            SpliceCommand::TimeSignal { .. } => self
                .descriptors
                .iter()
                .filter_map(|d| d.segmentation.as_ref())
                .any(|s| !s.cancel && is_end_type(s.type_id)),
            _ => false,
        }
    }
}

/// Segmentation types from 0x10 come in start/end pairs, start even and end odd (0x10/0x11
/// program, 0x22/0x23 break, 0x30/0x31 provider advertisement, 0x34/0x35 provider placement
/// opportunity, 0x40/0x41 unscheduled event, 0x50/0x51 network, …); 0x00 (not indicated) and
/// 0x01 (content identification) are neither.
fn is_start_type(type_id: u8) -> bool {
    type_id >= 0x10 && type_id % 2 == 0
}

fn is_end_type(type_id: u8) -> bool {
    type_id >= 0x10 && type_id % 2 == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(b64: &str) -> Vec<u8> {
        crate::base64::decode(b64).expect("base64")
    }

    #[test]
    fn the_mpeg2_crc_of_the_check_string() {
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_E6E7);
    }

    #[test]
    fn a_time_signal_with_a_placement_opportunity_start() {
        // SCTE 35 (2022) §14.2: time_signal, Placement Opportunity Start.
        let s =
            section("/DA0AAAAAAAA///wBQb+cr0AUAAeAhxDVUVJSAAAjn/PAAGlmbAICAAAAAAsoKGKNAIAmsnRfg==");
        let info = parse(&s).unwrap();
        assert_eq!(
            info.command,
            SpliceCommand::TimeSignal {
                pts: Some(0x0_72BD_0050)
            }
        );
        assert_eq!(info.splice_pts(), Some(0x0_72BD_0050));
        let seg = info.descriptors[0].segmentation.as_ref().unwrap();
        assert_eq!(seg.event_id, 0x4800_008E);
        assert_eq!(seg.type_id, 0x34);
        assert_eq!(seg.duration, Some(0x0_01A5_99B0));
        assert_eq!(seg.upid_type, 0x08);
        assert_eq!(seg.upid, [0, 0, 0, 0, 0x2C, 0xA0, 0xA1, 0x8A]);
        assert_eq!((seg.segment_num, seg.segments_expected), (2, 0));
        assert_eq!(info.duration(), Some(0x0_01A5_99B0));
        assert!(info.starts_break() && !info.ends_break());
        // Kept byte for byte: tag, length, body.
        let d = &info.descriptors[0];
        assert_eq!(d.bytes.len(), 2 + 0x1C);
        assert!(s.windows(d.bytes.len()).any(|w| w == d.bytes));
    }

    #[test]
    fn a_splice_insert_out_of_the_network_with_a_break_duration() {
        // SCTE 35 (2022) §14.1: splice_insert.
        let s = section("/DAvAAAAAAAA///wFAVIAACPf+/+c2nALv4AUsz1AAAAAAAKAAhDVUVJAAABNWLbowo=");
        let info = parse(&s).unwrap();
        let SpliceCommand::Insert(i) = &info.command else {
            panic!("{:?}", info.command)
        };
        assert_eq!(i.event_id, 0x4800_008F);
        assert!(i.out_of_network && !i.immediate && !i.cancel);
        assert_eq!(i.pts, Some(0x0_7369_C02E));
        assert_eq!(
            i.break_duration,
            Some(BreakDuration {
                auto_return: true,
                duration: 0x0_0052_CCF5
            })
        );
        assert_eq!(info.descriptors[0].tag, 0);
        assert_eq!(info.descriptors[0].identifier, CUEI);
        assert!(info.starts_break());
    }

    #[test]
    fn bad_sections_are_refused_with_the_reason() {
        let good = section("/DAvAAAAAAAA///wFAVIAACPf+/+c2nALv4AUsz1AAAAAAAKAAhDVUVJAAABNWLbowo=");
        // One flipped bit: the CRC says so.
        let mut flipped = good.clone();
        flipped[20] ^= 0x10;
        assert!(matches!(parse(&flipped), Err(Scte35Error::Crc { .. })));
        // Cut short, or with a byte too many: the length says so.
        assert!(matches!(
            parse(&good[..good.len() - 1]),
            Err(Scte35Error::Length { .. })
        ));
        let mut longer = good.clone();
        longer.push(0);
        assert!(matches!(parse(&longer), Err(Scte35Error::Length { .. })));
        // Not a splice_info_section at all.
        let mut other = good.clone();
        other[0] = 0x02;
        assert!(matches!(parse(&other), Err(Scte35Error::NotSpliceInfo(2))));
        assert!(matches!(parse(&[]), Err(Scte35Error::Truncated(_))));
        assert!(parse(&[0xFC]).is_err());
    }

    /// A time_signal section at `pts` with one segmentation descriptor of `type_id`.
    fn time_signal_with(pts: u64, type_id: u8) -> Vec<u8> {
        // splice_time(): time_specified_flag, 6 reserved bits, 33 bits of PTS.
        let command = [
            0xFE | (pts >> 32) as u8 & 1,
            (pts >> 24) as u8,
            (pts >> 16) as u8,
            (pts >> 8) as u8,
            pts as u8,
        ];
        // CUEI, event id 9, not cancelled, program segmentation without duration, no UPID.
        let mut descriptor = vec![0x02, 0];
        descriptor.extend_from_slice(b"CUEI");
        descriptor.extend_from_slice(&[0, 0, 0, 9, 0x7F, 0xBF, 0, 0, type_id, 1, 1]);
        descriptor[1] = (descriptor.len() - 2) as u8;
        let mut section = vec![0xFC, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xF0, 0, 0x06];
        section[12] = command.len() as u8;
        section.extend_from_slice(&command);
        section.extend_from_slice(&[0, descriptor.len() as u8]);
        section.extend_from_slice(&descriptor);
        let length = section.len() + 4 - 3;
        section[1] = 0x30 | (length >> 8) as u8;
        section[2] = length as u8;
        let crc = crc32_mpeg2(&section);
        section.extend_from_slice(&crc.to_be_bytes());
        section
    }

    #[test]
    fn segmentation_types_start_or_end_a_break_in_pairs() {
        let start = parse(&time_signal_with(900_000, 0x34)).unwrap();
        assert!(start.starts_break() && !start.ends_break());
        let end = parse(&time_signal_with(900_000, 0x35)).unwrap();
        assert!(end.ends_break() && !end.starts_break());
        assert_eq!(end.splice_pts(), Some(900_000));
        // Content identification is neither.
        let id = parse(&time_signal_with(900_000, 0x01)).unwrap();
        assert!(!id.starts_break() && !id.ends_break());
    }

    #[test]
    fn an_xml_bin_message_carries_the_section_in_base64() {
        let s = time_signal_with(900_000, 0x34);
        assert_eq!(section_of_xml_bin(xml_bin_of(&s).as_bytes()).unwrap(), s);
        // Another prefix, line breaks in the base64, a CDATA section: the same section.
        let b64 = crate::base64::encode(&s);
        let (head, tail) = b64.split_at(10);
        let prefixed = format!(
            "<scte35:Signal xmlns:scte35=\"{XML_NAMESPACE}\">\n <scte35:Binary>{head}\n  {tail}</scte35:Binary></scte35:Signal>"
        );
        assert_eq!(section_of_xml_bin(prefixed.as_bytes()).unwrap(), s);
        let cdata = format!("<Signal><Binary><![CDATA[{b64}]]></Binary></Signal>");
        assert_eq!(section_of_xml_bin(cdata.as_bytes()).unwrap(), s);
        // Refused: no Binary, not base64, a section that does not check, not XML.
        for bad in [
            "<Signal/>".to_string(),
            "<Signal><Binary>!!</Binary></Signal>".to_string(),
            format!(
                "<Signal><Binary>{}</Binary></Signal>",
                crate::base64::encode(&s[..s.len() - 1])
            ),
            "<Signal><Binary>".to_string(),
        ] {
            assert!(section_of_xml_bin(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(section_of_xml_bin(&[0xFF, 0xFE]).is_err());
    }

    #[test]
    fn the_pts_adjustment_applies_and_wraps_at_33_bits() {
        let info = SpliceInfo {
            pts_adjustment: 100,
            encrypted: false,
            tier: 0xFFF,
            command: SpliceCommand::TimeSignal {
                pts: Some(PTS_MODULO - 10),
            },
            descriptors: Vec::new(),
        };
        assert_eq!(info.splice_pts(), Some(90));
    }

    #[test]
    fn a_written_splice_insert_reads_back() {
        for (out, pts, duration) in [
            (true, Some(945_000), Some(2_700_000)),
            (false, None, None),
            (true, Some((1 << 33) + 5), None),
        ] {
            let section = splice_insert_section(42, out, pts, duration);
            let cue = parse(&section).unwrap();
            let SpliceCommand::Insert(i) = &cue.command else {
                panic!("{cue:?}");
            };
            assert_eq!(i.event_id, 42);
            assert_eq!(i.out_of_network, out);
            assert_eq!(i.immediate, pts.is_none());
            assert_eq!(cue.splice_pts(), pts.map(|p| p % (1 << 33)));
            assert_eq!(cue.duration(), duration);
            assert_eq!(cue.starts_break(), out);
            assert_eq!(cue.ends_break(), !out);
        }
    }
}
