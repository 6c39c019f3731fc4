//! The movie box and everything under it (ISO/IEC 14496-12 §8.2–§8.8), parsed into views that
//! borrow the sample tables from the file's bytes. Building the compact index from these views
//! is [`crate::index`]'s job; nothing here allocates per sample.

use super::reader::{FourCC, Reader};
use super::Mp4Error;

/// The kind of media a track carries, from its handler (`hdlr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackKind {
    Video,
    Audio,
    Text,
    /// Timed metadata (`meta` handler): event message tracks carrying ad cues, among others.
    Metadata,
    Other,
}

impl TrackKind {
    /// The kind a `hdlr` handler type says.
    pub fn from_handler(h: FourCC) -> TrackKind {
        match &h.0 {
            b"vide" => TrackKind::Video,
            b"soun" => TrackKind::Audio,
            b"subt" | b"text" | b"sbtl" => TrackKind::Text,
            b"meta" => TrackKind::Metadata,
            _ => TrackKind::Other,
        }
    }

    /// The name used in server manifests and filters (`video`, `audio`, `textstream`).
    pub fn as_str(self) -> &'static str {
        match self {
            TrackKind::Video => "video",
            TrackKind::Audio => "audio",
            TrackKind::Text => "textstream",
            TrackKind::Metadata => "meta",
            TrackKind::Other => "data",
        }
    }
}

/// Most tracks a movie may have.
pub const MAX_TRACKS: usize = 256;
/// Most boxes nested inside one another before the file is refused.
pub const MAX_DEPTH: usize = 16;
/// Most samples one track may have (≈ 46 hours of 25 fps video, ≈ 6 days of 48 kHz AAC).
pub const MAX_SAMPLES: u64 = 1 << 23;

const fn fc(code: &[u8; 4]) -> FourCC {
    FourCC::new(code)
}

/// `mvhd`: movie header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mvhd {
    pub timescale: u32,
    pub duration: u64,
    pub next_track_id: u32,
}

/// `tkhd`: track header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tkhd {
    pub flags: u32,
    pub track_id: u32,
    pub duration: u64,
    /// Presentation width and height (16.16 fixed point in the box, integer part here).
    pub width: u32,
    pub height: u32,
}

/// `mdhd`: media header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mdhd {
    pub timescale: u32,
    pub duration: u64,
    /// ISO-639-2/T code, `und` when unset.
    pub language: [u8; 3],
}

impl Mdhd {
    /// The language as text.
    pub fn language(&self) -> String {
        String::from_utf8_lossy(&self.language).into_owned()
    }
}

/// One `elst` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EditEntry {
    /// In movie timescale.
    pub segment_duration: u64,
    /// In media timescale; -1 is an empty edit.
    pub media_time: i64,
    pub rate: i32,
}

/// A table of fixed-size entries borrowed from the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Table<'a> {
    data: &'a [u8],
    entry_size: usize,
    /// Absolute offset of the first entry, for error messages.
    pub offset: u64,
}

impl<'a> Table<'a> {
    fn read(
        r: &mut Reader<'a>,
        count: u64,
        entry_size: usize,
        what: &'static str,
    ) -> Result<Table<'a>, Mp4Error> {
        let offset = r.offset();
        let bytes = count
            .checked_mul(entry_size as u64)
            .filter(|&b| b <= r.remaining() as u64)
            .ok_or(Mp4Error::TooLarge {
                fourcc: r.context(),
                offset,
                what,
                value: count,
                limit: (r.remaining() / entry_size.max(1)) as u64,
            })?;
        let data = r.bytes(bytes as usize)?;
        Ok(Table {
            data,
            entry_size,
            offset,
        })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.entry_size).unwrap_or(0)
    }

    /// True without entries.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn entry(&self, i: usize) -> &'a [u8] {
        &self.data[i * self.entry_size..(i + 1) * self.entry_size]
    }

    /// The `field`-th big-endian u32 of entry `i` (panics only on a caller bug: `i < len`).
    pub fn u32_at(&self, i: usize, field: usize) -> u32 {
        let e = self.entry(i);
        let b = &e[field * 4..field * 4 + 4];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Entry `i` as a big-endian u64 (8-byte entries).
    pub fn u64_at(&self, i: usize) -> u64 {
        let e = self.entry(i);
        let mut b = [0u8; 8];
        b.copy_from_slice(&e[..8]);
        u64::from_be_bytes(b)
    }

    /// All entries' bytes.
    pub fn all_bytes(&self) -> &'a [u8] {
        self.data
    }

    /// The raw bytes of entry `i`.
    pub fn raw(&self, i: usize) -> &'a [u8] {
        self.entry(i)
    }
}

/// `stsz` / `stz2`: sample sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleSizes<'a> {
    /// Every sample has this size.
    Constant { size: u32, count: u32 },
    /// `stsz` per-sample u32 sizes.
    Table(Table<'a>),
    /// `stz2` compact sizes of 4, 8 or 16 bits.
    Compact {
        field_size: u8,
        count: u32,
        data: &'a [u8],
    },
}

impl SampleSizes<'_> {
    /// Number of samples.
    pub fn count(&self) -> u32 {
        match self {
            SampleSizes::Constant { count, .. } | SampleSizes::Compact { count, .. } => *count,
            SampleSizes::Table(t) => t.len() as u32,
        }
    }

    /// Size of sample `i` (0-based, `i < count`).
    pub fn get(&self, i: usize) -> u32 {
        match self {
            SampleSizes::Constant { size, .. } => *size,
            SampleSizes::Table(t) => t.u32_at(i, 0),
            SampleSizes::Compact {
                field_size, data, ..
            } => match field_size {
                4 => {
                    let b = data[i / 2];
                    u32::from(if i % 2 == 0 { b >> 4 } else { b & 0x0f })
                }
                8 => u32::from(data[i]),
                _ => u32::from(u16::from_be_bytes([data[2 * i], data[2 * i + 1]])),
            },
        }
    }
}

/// The sample tables of one track (`stbl`), borrowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SampleTables<'a> {
    /// `stsd` entries: (format, whole entry box including its header, entry offset).
    pub sample_entries: Vec<(FourCC, &'a [u8], u64)>,
    /// `stts`: (sample_count, sample_delta).
    pub stts: Table<'a>,
    /// `ctts`: (sample_count, sample_offset); version 1 offsets are signed.
    pub ctts: Option<(u8, Table<'a>)>,
    /// `stss`: 1-based sync sample numbers.
    pub stss: Option<Table<'a>>,
    /// `stsz` / `stz2`.
    pub sizes: Option<SampleSizes<'a>>,
    /// `stsc`: (first_chunk, samples_per_chunk, sample_description_index).
    pub stsc: Table<'a>,
    /// `stco` (4-byte) or `co64` (8-byte) chunk offsets.
    pub chunk_offsets: Table<'a>,
    /// `sdtp`: one dependency byte per sample.
    pub sdtp: Option<&'a [u8]>,
    /// Offset of the `stbl` box, for errors.
    pub offset: u64,
}

/// `trex`: defaults for the samples of fragments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Trex {
    pub track_id: u32,
    pub default_sample_description_index: u32,
    pub default_sample_duration: u32,
    pub default_sample_size: u32,
    pub default_sample_flags: u32,
}

/// One `trak`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trak<'a> {
    pub tkhd: Tkhd,
    pub edits: Vec<EditEntry>,
    pub mdhd: Mdhd,
    /// `hdlr` handler type (`vide`, `soun`, `subt`, `text`, …).
    pub handler: FourCC,
    pub handler_name: String,
    /// `elng` extended language (BCP 47), if present.
    pub extended_language: Option<String>,
    pub stbl: SampleTables<'a>,
    /// The `trak` box's offset.
    pub offset: u64,
}

/// `moov`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Moov<'a> {
    pub mvhd: Mvhd,
    pub traks: Vec<Trak<'a>>,
    /// Present when the file is fragmented (`mvex`).
    pub trex: Vec<Trex>,
    /// `mehd` fragment duration, in movie timescale.
    pub fragment_duration: Option<u64>,
    pub fragmented: bool,
}

impl<'a> Moov<'a> {
    /// Parses a `moov` body.
    pub fn parse(mut r: Reader<'a>) -> Result<Moov<'a>, Mp4Error> {
        let start = r.offset();
        let mut moov = Moov::default();
        let mut have_mvhd = false;
        while let Some((h, mut body)) = r.next_box_body()? {
            match &h.fourcc.0 {
                b"mvhd" => {
                    moov.mvhd = parse_mvhd(&mut body)?;
                    have_mvhd = true;
                }
                b"trak" => {
                    if moov.traks.len() >= MAX_TRACKS {
                        return Err(Mp4Error::TooLarge {
                            fourcc: fc(b"moov"),
                            offset: h.offset,
                            what: "track count",
                            value: moov.traks.len() as u64 + 1,
                            limit: MAX_TRACKS as u64,
                        });
                    }
                    moov.traks.push(parse_trak(body, h.offset)?);
                }
                b"mvex" => {
                    moov.fragmented = true;
                    parse_mvex(body, &mut moov)?;
                }
                _ => {}
            }
        }
        if !have_mvhd {
            return Err(Mp4Error::Missing {
                missing: fc(b"mvhd"),
                parent: fc(b"moov"),
                offset: start,
            });
        }
        Ok(moov)
    }

    /// The `trex` defaults of a track.
    pub fn trex_for(&self, track_id: u32) -> Option<&Trex> {
        self.trex.iter().find(|t| t.track_id == track_id)
    }
}

fn parse_mvhd(r: &mut Reader<'_>) -> Result<Mvhd, Mp4Error> {
    let (version, _) = r.full_box()?;
    r.u32_or_u64(version)?; // creation_time
    r.u32_or_u64(version)?; // modification_time
    let timescale = r.u32()?;
    let duration = r.u32_or_u64(version)?;
    r.skip(4 + 2 + 2 + 8 + 36 + 24)?;
    let next_track_id = r.u32()?;
    if timescale == 0 {
        return Err(r.error("timescale is 0"));
    }
    Ok(Mvhd {
        timescale,
        duration,
        next_track_id,
    })
}

fn parse_tkhd(r: &mut Reader<'_>) -> Result<Tkhd, Mp4Error> {
    let (version, flags) = r.full_box()?;
    r.u32_or_u64(version)?;
    r.u32_or_u64(version)?;
    let track_id = r.u32()?;
    r.skip(4)?;
    let duration = r.u32_or_u64(version)?;
    r.skip(8 + 2 + 2 + 2 + 2 + 36)?;
    let width = r.u32()? >> 16;
    let height = r.u32()? >> 16;
    if track_id == 0 {
        return Err(r.error("track_ID is 0"));
    }
    Ok(Tkhd {
        flags,
        track_id,
        duration,
        width,
        height,
    })
}

fn parse_mdhd(r: &mut Reader<'_>) -> Result<Mdhd, Mp4Error> {
    let (version, _) = r.full_box()?;
    r.u32_or_u64(version)?;
    r.u32_or_u64(version)?;
    let timescale = r.u32()?;
    let duration = r.u32_or_u64(version)?;
    let packed = r.u16()?;
    if timescale == 0 {
        return Err(r.error("timescale is 0"));
    }
    let language = if packed == 0 || packed == 0x7fff {
        *b"und"
    } else {
        let c = |shift: u16| (((packed >> shift) & 0x1f) as u8).wrapping_add(0x60);
        let l = [c(10), c(5), c(0)];
        if l.iter().all(u8::is_ascii_lowercase) {
            l
        } else {
            *b"und"
        }
    };
    Ok(Mdhd {
        timescale,
        duration,
        language,
    })
}

fn parse_elst(r: &mut Reader<'_>) -> Result<Vec<EditEntry>, Mp4Error> {
    let (version, _) = r.full_box()?;
    let count = r.u32()?;
    let entry_size = if version == 1 { 20 } else { 12 };
    if u64::from(count) * entry_size > r.remaining() as u64 || count > 1024 {
        return Err(Mp4Error::TooLarge {
            fourcc: fc(b"elst"),
            offset: r.offset(),
            what: "edit count",
            value: u64::from(count),
            limit: (r.remaining() as u64 / entry_size).min(1024),
        });
    }
    let mut edits = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let (segment_duration, media_time) = if version == 1 {
            (r.u64()?, r.i64()?)
        } else {
            (u64::from(r.u32()?), i64::from(r.i32()?))
        };
        let rate = r.i32()?;
        edits.push(EditEntry {
            segment_duration,
            media_time,
            rate,
        });
    }
    Ok(edits)
}

fn parse_hdlr(r: &mut Reader<'_>) -> Result<(FourCC, String), Mp4Error> {
    r.full_box()?;
    r.skip(4)?;
    let handler = r.fourcc()?;
    r.skip(12)?;
    let name = r.c_string()?;
    Ok((handler, name))
}

fn parse_elng(r: &mut Reader<'_>) -> Result<String, Mp4Error> {
    r.full_box()?;
    let tag = r.c_string()?;
    if tag.is_empty()
        || tag.len() > 64
        || !tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(r.error("extended language tag is not BCP 47"));
    }
    Ok(tag)
}

fn parse_trak<'a>(mut r: Reader<'a>, offset: u64) -> Result<Trak<'a>, Mp4Error> {
    let mut trak = Trak {
        offset,
        ..Trak::default()
    };
    let (mut have_tkhd, mut have_mdia) = (false, false);
    while let Some((h, mut body)) = r.next_box_body()? {
        match &h.fourcc.0 {
            b"tkhd" => {
                trak.tkhd = parse_tkhd(&mut body)?;
                have_tkhd = true;
            }
            b"edts" => {
                while let Some((eh, mut eb)) = body.next_box_body()? {
                    if eh.fourcc == fc(b"elst") {
                        trak.edits = parse_elst(&mut eb)?;
                    }
                }
            }
            b"mdia" => {
                parse_mdia(body, &mut trak)?;
                have_mdia = true;
            }
            b"udta" => {
                while let Some((uh, mut ub)) = body.next_box_body()? {
                    if uh.fourcc == fc(b"elng") && trak.extended_language.is_none() {
                        trak.extended_language = Some(parse_elng(&mut ub)?);
                    }
                }
            }
            _ => {}
        }
    }
    for (ok, missing) in [(have_tkhd, b"tkhd"), (have_mdia, b"mdia")] {
        if !ok {
            return Err(Mp4Error::Missing {
                missing: fc(missing),
                parent: fc(b"trak"),
                offset,
            });
        }
    }
    Ok(trak)
}

fn parse_mdia<'a>(mut r: Reader<'a>, trak: &mut Trak<'a>) -> Result<(), Mp4Error> {
    let start = r.offset();
    let (mut have_mdhd, mut have_hdlr, mut have_minf) = (false, false, false);
    while let Some((h, mut body)) = r.next_box_body()? {
        match &h.fourcc.0 {
            b"mdhd" => {
                trak.mdhd = parse_mdhd(&mut body)?;
                have_mdhd = true;
            }
            b"hdlr" => {
                (trak.handler, trak.handler_name) = parse_hdlr(&mut body)?;
                have_hdlr = true;
            }
            b"elng" => trak.extended_language = Some(parse_elng(&mut body)?),
            b"minf" => {
                while let Some((mh, mb)) = body.next_box_body()? {
                    if mh.fourcc == fc(b"stbl") {
                        trak.stbl = parse_stbl(mb, mh.offset)?;
                        have_minf = true;
                    }
                }
            }
            _ => {}
        }
    }
    for (ok, missing) in [
        (have_mdhd, b"mdhd"),
        (have_hdlr, b"hdlr"),
        (have_minf, b"stbl"),
    ] {
        if !ok {
            return Err(Mp4Error::Missing {
                missing: fc(missing),
                parent: fc(b"mdia"),
                offset: start,
            });
        }
    }
    Ok(())
}

fn parse_stbl<'a>(mut r: Reader<'a>, offset: u64) -> Result<SampleTables<'a>, Mp4Error> {
    let mut t = SampleTables {
        offset,
        ..SampleTables::default()
    };
    let mut have = [false; 4]; // stsd, stts, stsc, chunk offsets
    while let Some((h, mut body)) = r.next_box_body()? {
        match &h.fourcc.0 {
            b"stsd" => {
                body.full_box()?;
                let count = body.u32()?;
                if count == 0 || count > 64 {
                    return Err(body.error("stsd entry count is 0 or above 64"));
                }
                for _ in 0..count {
                    let entry_offset = body.offset();
                    let whole = body.rest();
                    let Some((eh, _)) = body.next_box_body()? else {
                        return Err(body.error("fewer stsd entries than counted"));
                    };
                    t.sample_entries
                        .push((eh.fourcc, &whole[..eh.size as usize], entry_offset));
                }
                have[0] = true;
            }
            b"stts" => {
                body.full_box()?;
                let n = body.u32()?;
                t.stts = Table::read(&mut body, u64::from(n), 8, "stts entry count")?;
                have[1] = true;
            }
            b"ctts" => {
                let (version, _) = body.full_box()?;
                let n = body.u32()?;
                t.ctts = Some((
                    version,
                    Table::read(&mut body, u64::from(n), 8, "ctts entry count")?,
                ));
            }
            b"stss" => {
                body.full_box()?;
                let n = body.u32()?;
                t.stss = Some(Table::read(&mut body, u64::from(n), 4, "stss entry count")?);
            }
            b"stsz" => {
                body.full_box()?;
                let size = body.u32()?;
                let count = body.u32()?;
                check_sample_count(&body, count)?;
                t.sizes = Some(if size != 0 {
                    SampleSizes::Constant { size, count }
                } else {
                    SampleSizes::Table(Table::read(
                        &mut body,
                        u64::from(count),
                        4,
                        "stsz sample count",
                    )?)
                });
            }
            b"stz2" => {
                body.full_box()?;
                body.skip(3)?;
                let field_size = body.u8()?;
                let count = body.u32()?;
                check_sample_count(&body, count)?;
                let bytes = match field_size {
                    4 => u64::from(count).div_ceil(2),
                    8 => u64::from(count),
                    16 => u64::from(count) * 2,
                    _ => return Err(body.error("stz2 field size is not 4, 8 or 16")),
                };
                if bytes > body.remaining() as u64 {
                    return Err(body.error("stz2 sample count exceeds the box"));
                }
                t.sizes = Some(SampleSizes::Compact {
                    field_size,
                    count,
                    data: body.bytes(bytes as usize)?,
                });
            }
            b"stsc" => {
                body.full_box()?;
                let n = body.u32()?;
                t.stsc = Table::read(&mut body, u64::from(n), 12, "stsc entry count")?;
                have[2] = true;
            }
            b"stco" => {
                body.full_box()?;
                let n = body.u32()?;
                t.chunk_offsets = Table::read(&mut body, u64::from(n), 4, "stco entry count")?;
                have[3] = true;
            }
            b"co64" => {
                body.full_box()?;
                let n = body.u32()?;
                t.chunk_offsets = Table::read(&mut body, u64::from(n), 8, "co64 entry count")?;
                have[3] = true;
            }
            b"sdtp" => {
                body.full_box()?;
                t.sdtp = Some(body.rest());
            }
            _ => {}
        }
    }
    for (ok, missing) in have.iter().zip([b"stsd", b"stts", b"stsc", b"stco"]) {
        if !ok {
            return Err(Mp4Error::Missing {
                missing: fc(missing),
                parent: fc(b"stbl"),
                offset,
            });
        }
    }
    if t.sizes.is_none() {
        return Err(Mp4Error::Missing {
            missing: fc(b"stsz"),
            parent: fc(b"stbl"),
            offset,
        });
    }
    Ok(t)
}

fn check_sample_count(r: &Reader<'_>, count: u32) -> Result<(), Mp4Error> {
    if u64::from(count) > MAX_SAMPLES {
        return Err(Mp4Error::TooLarge {
            fourcc: r.context(),
            offset: r.offset(),
            what: "sample count",
            value: u64::from(count),
            limit: MAX_SAMPLES,
        });
    }
    Ok(())
}

fn parse_mvex(mut r: Reader<'_>, moov: &mut Moov<'_>) -> Result<(), Mp4Error> {
    while let Some((h, mut body)) = r.next_box_body()? {
        match &h.fourcc.0 {
            b"mehd" => {
                let (version, _) = body.full_box()?;
                moov.fragment_duration = Some(body.u32_or_u64(version)?);
            }
            b"trex" => {
                body.full_box()?;
                if moov.trex.len() >= MAX_TRACKS {
                    return Err(body.error("too many trex boxes"));
                }
                moov.trex.push(Trex {
                    track_id: body.u32()?,
                    default_sample_description_index: body.u32()?,
                    default_sample_duration: body.u32()?,
                    default_sample_size: body.u32()?,
                    default_sample_flags: body.u32()?,
                });
            }
            _ => {}
        }
    }
    Ok(())
}
