//! Movie fragments (ISO/IEC 14496-12 §8.8) and the boxes around them: `moof` with `mfhd`,
//! `traf` (`tfhd` with every flag, `tfdt` v0/v1, `trun` with every flag combination, Smooth
//! `tfxd`/`tfrf`, `senc`/`saiz`/`saio`), `sidx`, `mfra`/`tfra`/`mfro`, `emsg`.

use super::reader::{FourCC, Reader};
use super::Mp4Error;

/// Most samples one `trun` may describe; real fragments carry a few hundred.
pub const MAX_TRUN_SAMPLES: u32 = 1 << 20;
/// Most `traf` boxes one `moof` may carry.
pub const MAX_TRAFS: usize = 256;

/// Smooth Streaming `tfxd` (fragment absolute time and duration).
pub const UUID_TFXD: [u8; 16] = [
    0x6d, 0x1d, 0x9b, 0x05, 0x42, 0xd5, 0x44, 0xe6, 0x80, 0xe2, 0x14, 0x1d, 0xaf, 0xf7, 0x57, 0xb2,
];
/// Smooth Streaming `tfrf` (look-ahead fragment references, live).
pub const UUID_TFRF: [u8; 16] = [
    0xd4, 0x80, 0x7e, 0xf2, 0xca, 0x39, 0x46, 0x95, 0x8e, 0x54, 0x26, 0xcb, 0x9e, 0x46, 0xa7, 0x9f,
];
/// PIFF sample encryption box (the `senc` of PIFF 1.1).
pub const UUID_PIFF_SENC: [u8; 16] = [
    0xa2, 0x39, 0x4f, 0x52, 0x5a, 0x9b, 0x4f, 0x14, 0xa2, 0x44, 0x6c, 0x42, 0x7c, 0x64, 0x8d, 0xf4,
];

// tfhd flags
pub const TFHD_BASE_DATA_OFFSET: u32 = 0x01;
pub const TFHD_SAMPLE_DESCRIPTION_INDEX: u32 = 0x02;
pub const TFHD_DEFAULT_DURATION: u32 = 0x08;
pub const TFHD_DEFAULT_SIZE: u32 = 0x10;
pub const TFHD_DEFAULT_FLAGS: u32 = 0x20;
pub const TFHD_DURATION_IS_EMPTY: u32 = 0x01_0000;
pub const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;

// trun flags
pub const TRUN_DATA_OFFSET: u32 = 0x001;
pub const TRUN_FIRST_SAMPLE_FLAGS: u32 = 0x004;
pub const TRUN_DURATION: u32 = 0x100;
pub const TRUN_SIZE: u32 = 0x200;
pub const TRUN_FLAGS: u32 = 0x400;
pub const TRUN_CTO: u32 = 0x800;

/// `sample_is_non_sync_sample` in sample flags.
pub const SAMPLE_FLAG_NON_SYNC: u32 = 0x0001_0000;
/// `sample_depends_on` == 2 (does not depend on others: an I-frame) in sample flags.
pub const SAMPLE_FLAG_DEPENDS_NO: u32 = 0x0200_0000;
/// `sample_depends_on` == 1 in sample flags.
pub const SAMPLE_FLAG_DEPENDS_YES: u32 = 0x0100_0000;

/// `tfhd`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tfhd {
    pub flags: u32,
    pub track_id: u32,
    pub base_data_offset: Option<u64>,
    pub sample_description_index: Option<u32>,
    pub default_sample_duration: Option<u32>,
    pub default_sample_size: Option<u32>,
    pub default_sample_flags: Option<u32>,
}

impl Tfhd {
    pub fn parse(r: &mut Reader<'_>) -> Result<Tfhd, Mp4Error> {
        let (_, flags) = r.full_box()?;
        let track_id = r.u32()?;
        let opt32 = |r: &mut Reader<'_>, bit: u32| -> Result<Option<u32>, Mp4Error> {
            if flags & bit != 0 {
                r.u32().map(Some)
            } else {
                Ok(None)
            }
        };
        let base_data_offset = if flags & TFHD_BASE_DATA_OFFSET != 0 {
            Some(r.u64()?)
        } else {
            None
        };
        Ok(Tfhd {
            flags,
            track_id,
            base_data_offset,
            sample_description_index: opt32(r, TFHD_SAMPLE_DESCRIPTION_INDEX)?,
            default_sample_duration: opt32(r, TFHD_DEFAULT_DURATION)?,
            default_sample_size: opt32(r, TFHD_DEFAULT_SIZE)?,
            default_sample_flags: opt32(r, TFHD_DEFAULT_FLAGS)?,
        })
    }
}

/// A `trun` with its per-sample fields borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trun<'a> {
    pub version: u8,
    pub flags: u32,
    pub sample_count: u32,
    pub data_offset: Option<i32>,
    pub first_sample_flags: Option<u32>,
    /// The per-sample records, `record_size` bytes each.
    records: &'a [u8],
    record_size: usize,
    pub offset: u64,
}

/// One sample of a `trun`, with its optional fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrunSample {
    pub duration: Option<u32>,
    pub size: Option<u32>,
    pub flags: Option<u32>,
    /// Composition time offset (signed in version 1; version 0 values are read as signed too,
    /// as encoders write negative offsets in version 0 boxes).
    pub cto: Option<i32>,
}

impl<'a> Trun<'a> {
    pub fn parse(r: &mut Reader<'a>) -> Result<Trun<'a>, Mp4Error> {
        let offset = r.offset();
        let (version, flags) = r.full_box()?;
        let sample_count = r.u32()?;
        let data_offset = if flags & TRUN_DATA_OFFSET != 0 {
            Some(r.i32()?)
        } else {
            None
        };
        let first_sample_flags = if flags & TRUN_FIRST_SAMPLE_FLAGS != 0 {
            Some(r.u32()?)
        } else {
            None
        };
        let record_size = [TRUN_DURATION, TRUN_SIZE, TRUN_FLAGS, TRUN_CTO]
            .iter()
            .filter(|&&b| flags & b != 0)
            .count()
            * 4;
        if sample_count > MAX_TRUN_SAMPLES {
            return Err(Mp4Error::TooLarge {
                fourcc: FourCC::new(b"trun"),
                offset,
                what: "sample count",
                value: u64::from(sample_count),
                limit: u64::from(MAX_TRUN_SAMPLES),
            });
        }
        let bytes = sample_count as usize * record_size;
        if bytes > r.remaining() {
            return Err(r.error("trun sample count exceeds the box"));
        }
        let records = r.bytes(bytes)?;
        Ok(Trun {
            version,
            flags,
            sample_count,
            data_offset,
            first_sample_flags,
            records,
            record_size,
            offset,
        })
    }

    /// Sample `i` (`i < sample_count`).
    pub fn sample(&self, i: usize) -> TrunSample {
        let rec = &self.records[i * self.record_size..(i + 1) * self.record_size];
        let mut pos = 0;
        let mut take = |bit: u32| {
            if self.flags & bit != 0 {
                let v = u32::from_be_bytes([rec[pos], rec[pos + 1], rec[pos + 2], rec[pos + 3]]);
                pos += 4;
                Some(v)
            } else {
                None
            }
        };
        let duration = take(TRUN_DURATION);
        let size = take(TRUN_SIZE);
        let mut flags = take(TRUN_FLAGS);
        let cto = take(TRUN_CTO).map(|v| v as i32);
        if i == 0 && self.first_sample_flags.is_some() {
            flags = self.first_sample_flags;
        }
        TrunSample {
            duration,
            size,
            flags,
            cto,
        }
    }
}

/// A `traf`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Traf<'a> {
    pub tfhd: Tfhd,
    /// `tfdt` base media decode time.
    pub base_decode_time: Option<u64>,
    /// Smooth `tfxd`: (absolute time, duration) in the track timescale.
    pub tfxd: Option<(u64, u64)>,
    /// Smooth `tfrf`: look-ahead (absolute time, duration) pairs.
    pub tfrf: Vec<(u64, u64)>,
    pub truns: Vec<Trun<'a>>,
    /// `senc` / PIFF sample encryption present.
    pub has_sample_encryption: bool,
    /// `saiz` / `saio` present.
    pub has_aux_info: bool,
}

/// A `moof`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Moof<'a> {
    pub sequence_number: u32,
    pub trafs: Vec<Traf<'a>>,
    /// Offset of the `moof` box itself.
    pub offset: u64,
    /// Total size of the `moof` box.
    pub size: u64,
    /// `pssh` boxes (system ID, whole box) carried in the fragment.
    pub pssh: Vec<([u8; 16], &'a [u8])>,
}

impl<'a> Moof<'a> {
    /// Parses a `moof` body; `offset` and `size` are the box's own.
    pub fn parse(mut r: Reader<'a>, offset: u64, size: u64) -> Result<Moof<'a>, Mp4Error> {
        let mut moof = Moof {
            offset,
            size,
            ..Moof::default()
        };
        let mut have_mfhd = false;
        while let Some((h, mut body)) = r.next_box_body()? {
            match &h.fourcc.0 {
                b"mfhd" => {
                    body.full_box()?;
                    moof.sequence_number = body.u32()?;
                    have_mfhd = true;
                }
                b"traf" => {
                    if moof.trafs.len() >= MAX_TRAFS {
                        return Err(body.error("too many traf boxes"));
                    }
                    moof.trafs.push(parse_traf(body, h.offset)?);
                }
                b"pssh" => {
                    let raw = body.rest();
                    body.full_box()?;
                    let system_id = body.uuid()?;
                    moof.pssh.push((system_id, raw));
                }
                _ => {}
            }
        }
        if !have_mfhd {
            return Err(Mp4Error::Missing {
                missing: FourCC::new(b"mfhd"),
                parent: FourCC::new(b"moof"),
                offset,
            });
        }
        Ok(moof)
    }
}

fn parse_traf<'a>(mut r: Reader<'a>, offset: u64) -> Result<Traf<'a>, Mp4Error> {
    let mut traf = Traf::default();
    let mut have_tfhd = false;
    while let Some((h, mut body)) = r.next_box_body()? {
        match &h.fourcc.0 {
            b"tfhd" => {
                traf.tfhd = Tfhd::parse(&mut body)?;
                have_tfhd = true;
            }
            b"tfdt" => {
                let (version, _) = body.full_box()?;
                traf.base_decode_time = Some(body.u32_or_u64(version)?);
            }
            b"trun" => {
                if traf.truns.len() >= MAX_TRAFS {
                    return Err(body.error("too many trun boxes"));
                }
                traf.truns.push(Trun::parse(&mut body)?);
            }
            b"senc" => traf.has_sample_encryption = true,
            b"saiz" | b"saio" => traf.has_aux_info = true,
            b"uuid" => match h.uuid {
                Some(UUID_TFXD) => {
                    let (version, _) = body.full_box()?;
                    traf.tfxd = Some((body.u32_or_u64(version)?, body.u32_or_u64(version)?));
                }
                Some(UUID_TFRF) => {
                    let (version, _) = body.full_box()?;
                    let count = body.u8()?;
                    for _ in 0..count {
                        traf.tfrf
                            .push((body.u32_or_u64(version)?, body.u32_or_u64(version)?));
                    }
                }
                Some(UUID_PIFF_SENC) => traf.has_sample_encryption = true,
                _ => {}
            },
            _ => {}
        }
    }
    if !have_tfhd {
        return Err(Mp4Error::Missing {
            missing: FourCC::new(b"tfhd"),
            parent: FourCC::new(b"traf"),
            offset,
        });
    }
    Ok(traf)
}

/// One `sidx` reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SidxReference {
    pub reference_type: bool,
    pub referenced_size: u32,
    pub subsegment_duration: u32,
    pub starts_with_sap: bool,
}

/// `sidx`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sidx {
    pub reference_id: u32,
    pub timescale: u32,
    pub earliest_presentation_time: u64,
    pub first_offset: u64,
    pub references: Vec<SidxReference>,
}

impl Sidx {
    pub fn parse(r: &mut Reader<'_>) -> Result<Sidx, Mp4Error> {
        let (version, _) = r.full_box()?;
        let reference_id = r.u32()?;
        let timescale = r.u32()?;
        let earliest_presentation_time = r.u32_or_u64(version)?;
        let first_offset = r.u32_or_u64(version)?;
        r.skip(2)?;
        let count = r.u16()?;
        if usize::from(count) * 12 > r.remaining() {
            return Err(r.error("sidx reference count exceeds the box"));
        }
        let mut references = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let a = r.u32()?;
            let subsegment_duration = r.u32()?;
            let c = r.u32()?;
            references.push(SidxReference {
                reference_type: a >> 31 == 1,
                referenced_size: a & 0x7fff_ffff,
                subsegment_duration,
                starts_with_sap: c >> 31 == 1,
            });
        }
        Ok(Sidx {
            reference_id,
            timescale,
            earliest_presentation_time,
            first_offset,
            references,
        })
    }
}

/// One `tfra` entry: a random-access point of a track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TfraEntry {
    pub time: u64,
    pub moof_offset: u64,
    pub traf_number: u32,
    pub trun_number: u32,
    pub sample_number: u32,
}

/// `tfra`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tfra {
    pub track_id: u32,
    pub entries: Vec<TfraEntry>,
}

impl Tfra {
    pub fn parse(r: &mut Reader<'_>) -> Result<Tfra, Mp4Error> {
        let (version, _) = r.full_box()?;
        let track_id = r.u32()?;
        let sizes = r.u32()?;
        let len = |bits: u32| ((bits & 3) + 1) as usize;
        let (traf_len, trun_len, sample_len) = (len(sizes >> 4), len(sizes >> 2), len(sizes));
        let count = r.u32()?;
        let entry_size = if version == 1 { 16 } else { 8 } + traf_len + trun_len + sample_len;
        if count as usize > r.remaining() / entry_size {
            return Err(r.error("tfra entry count exceeds the box"));
        }
        let read_n = |r: &mut Reader<'_>, n: usize| -> Result<u32, Mp4Error> {
            let mut v = 0u32;
            for b in r.bytes(n)? {
                v = v << 8 | u32::from(*b);
            }
            Ok(v)
        };
        let mut entries = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let time = r.u32_or_u64(version)?;
            let moof_offset = r.u32_or_u64(version)?;
            entries.push(TfraEntry {
                time,
                moof_offset,
                traf_number: read_n(r, traf_len)?,
                trun_number: read_n(r, trun_len)?,
                sample_number: read_n(r, sample_len)?,
            });
        }
        Ok(Tfra { track_id, entries })
    }
}

/// `mfra`: the random-access tables at the end of a fragmented file.
pub fn parse_mfra(mut r: Reader<'_>) -> Result<Vec<Tfra>, Mp4Error> {
    let mut tables = Vec::new();
    while let Some((h, mut body)) = r.next_box_body()? {
        if h.fourcc == FourCC::new(b"tfra") {
            if tables.len() >= MAX_TRAFS {
                return Err(body.error("too many tfra boxes"));
            }
            tables.push(Tfra::parse(&mut body)?);
        }
    }
    Ok(tables)
}

/// `emsg` (DASH event message), versions 0 and 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emsg {
    pub version: u8,
    pub scheme_id_uri: String,
    pub value: String,
    pub timescale: u32,
    /// Version 0: presentation time delta; version 1: presentation time.
    pub presentation_time: u64,
    pub event_duration: u32,
    pub id: u32,
    pub message_data: Vec<u8>,
}

impl Emsg {
    pub fn parse(r: &mut Reader<'_>) -> Result<Emsg, Mp4Error> {
        let (version, _) = r.full_box()?;
        let (scheme_id_uri, value, timescale, presentation_time, event_duration, id);
        if version == 0 {
            scheme_id_uri = r.c_string()?;
            value = r.c_string()?;
            timescale = r.u32()?;
            presentation_time = u64::from(r.u32()?);
            event_duration = r.u32()?;
            id = r.u32()?;
        } else if version == 1 {
            timescale = r.u32()?;
            presentation_time = r.u64()?;
            event_duration = r.u32()?;
            id = r.u32()?;
            scheme_id_uri = r.c_string()?;
            value = r.c_string()?;
        } else {
            return Err(r.error("unsupported emsg version"));
        }
        Ok(Emsg {
            version,
            scheme_id_uri,
            value,
            timescale,
            presentation_time,
            event_duration,
            id,
            message_data: r.rest().to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fbx(fourcc: &[u8; 4], version: u8, flags: u32, body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 12) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(fourcc);
        v.push(version);
        v.extend_from_slice(&flags.to_be_bytes()[1..]);
        v.extend_from_slice(body);
        v
    }

    fn be(v: &[u32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_be_bytes()).collect()
    }

    fn body(b: &[u8]) -> Reader<'_> {
        let mut r = Reader::new(b, 0);
        r.skip(8).unwrap();
        r
    }

    #[test]
    fn tfhd_every_flag() {
        let flags = TFHD_BASE_DATA_OFFSET
            | TFHD_SAMPLE_DESCRIPTION_INDEX
            | TFHD_DEFAULT_DURATION
            | TFHD_DEFAULT_SIZE
            | TFHD_DEFAULT_FLAGS
            | TFHD_DURATION_IS_EMPTY;
        let mut b = be(&[7]);
        b.extend(5u64.to_be_bytes());
        b.extend(be(&[2, 1000, 300, 0x0101_0000]));
        let bx = fbx(b"tfhd", 0, flags, &b);
        let t = Tfhd::parse(&mut body(&bx)).unwrap();
        assert_eq!(t.track_id, 7);
        assert_eq!(t.base_data_offset, Some(5));
        assert_eq!(t.sample_description_index, Some(2));
        assert_eq!(t.default_sample_duration, Some(1000));
        assert_eq!(t.default_sample_size, Some(300));
        assert_eq!(t.default_sample_flags, Some(0x0101_0000));
        let bare = fbx(b"tfhd", 0, TFHD_DEFAULT_BASE_IS_MOOF, &be(&[1]));
        let t = Tfhd::parse(&mut body(&bare)).unwrap();
        assert_eq!(t.default_sample_size, None);
        assert!(Tfhd::parse(&mut body(&fbx(
            b"tfhd",
            0,
            TFHD_BASE_DATA_OFFSET,
            &be(&[1])
        )))
        .is_err());
    }

    #[test]
    fn trun_flag_combinations() {
        for flags in 0u32..16 {
            let mut f = TRUN_DATA_OFFSET;
            let fields = [TRUN_DURATION, TRUN_SIZE, TRUN_FLAGS, TRUN_CTO];
            for (i, bit) in fields.iter().enumerate() {
                if flags & (1 << i) != 0 {
                    f |= bit;
                }
            }
            let mut b = be(&[2]);
            b.extend((-8i32).to_be_bytes());
            for s in 0..2u32 {
                for (i, _) in fields.iter().enumerate() {
                    if flags & (1 << i) != 0 {
                        b.extend(be(&[100 * (i as u32 + 1) + s]));
                    }
                }
            }
            let bx = fbx(b"trun", 1, f, &b);
            let t = Trun::parse(&mut body(&bx)).unwrap();
            assert_eq!(t.sample_count, 2);
            assert_eq!(t.data_offset, Some(-8));
            let s1 = t.sample(1);
            assert_eq!(s1.duration, (flags & 1 != 0).then_some(101));
            assert_eq!(s1.size, (flags & 2 != 0).then_some(201));
            assert_eq!(s1.flags, (flags & 4 != 0).then_some(301));
            assert_eq!(s1.cto, (flags & 8 != 0).then_some(401));
        }
        // first_sample_flags overrides sample 0's flags only.
        let mut b = be(&[2, 0x0200_0000]);
        b.extend(be(&[10, 20]));
        let bx = fbx(b"trun", 0, TRUN_FIRST_SAMPLE_FLAGS | TRUN_SIZE, &b);
        let t = Trun::parse(&mut body(&bx)).unwrap();
        assert_eq!(t.sample(0).flags, Some(0x0200_0000));
        assert_eq!(t.sample(1).flags, None);
        // Counts that do not fit the box.
        let bx = fbx(b"trun", 0, TRUN_SIZE, &be(&[1000, 1]));
        assert!(Trun::parse(&mut body(&bx)).is_err());
    }

    #[test]
    fn sidx_tfra_mfra_emsg() {
        let mut b = be(&[1, 90000]);
        b.extend(1u64.to_be_bytes());
        b.extend(2u64.to_be_bytes());
        b.extend([0, 0, 0, 2]);
        b.extend(be(&[1000, 180000, 0x9000_0000, 0x8000_0500, 180000, 0]));
        let bx = fbx(b"sidx", 1, 0, &b);
        let s = Sidx::parse(&mut body(&bx)).unwrap();
        assert_eq!(
            (s.timescale, s.earliest_presentation_time, s.first_offset),
            (90000, 1, 2)
        );
        assert_eq!(s.references.len(), 2);
        assert!(s.references[0].starts_with_sap && !s.references[0].reference_type);
        assert!(s.references[1].reference_type);
        assert_eq!(s.references[1].referenced_size, 0x500);

        // tfra version 1, one-byte traf/trun/sample numbers.
        let mut t = be(&[3, 0, 2]);
        for k in 0..2u64 {
            t.extend((k * 100).to_be_bytes());
            t.extend((k * 5000 + 40).to_be_bytes());
            t.extend([1, 1, 1]);
        }
        let tfra = fbx(b"tfra", 1, 0, &t);
        let mut mfra = ((tfra.len() + 8) as u32).to_be_bytes().to_vec();
        mfra.extend(b"mfra");
        mfra.extend(&tfra);
        let tables = parse_mfra(body(&mfra)).unwrap();
        assert_eq!(tables[0].track_id, 3);
        assert_eq!(tables[0].entries[1].time, 100);
        assert_eq!(tables[0].entries[1].moof_offset, 5040);
        let bad = fbx(b"tfra", 0, 0, &be(&[3, 0, 1000]));
        assert!(Tfra::parse(&mut body(&bad)).is_err());

        let mut e = b"urn:scte:scte35:2013:bin\0\0".to_vec();
        e.extend(be(&[90000, 10, 20, 7]));
        e.extend(b"payload");
        let emsg = fbx(b"emsg", 0, 0, &e);
        let m = Emsg::parse(&mut body(&emsg)).unwrap();
        assert_eq!(m.scheme_id_uri, "urn:scte:scte35:2013:bin");
        assert_eq!(
            (m.timescale, m.presentation_time, m.event_duration, m.id),
            (90000, 10, 20, 7)
        );
        assert_eq!(m.message_data, b"payload");
        assert!(Emsg::parse(&mut body(&fbx(b"emsg", 2, 0, &[]))).is_err());
    }

    #[test]
    fn smooth_tfxd_tfrf_and_tfdt_in_traf() {
        let mut traf = fbx(b"tfhd", 0, 0, &be(&[1]));
        let mut tfdt = fbx(b"tfdt", 1, 0, &[]);
        tfdt.truncate(12);
        tfdt.extend((1u64 << 40).to_be_bytes());
        tfdt[3] = 20;
        traf.extend(&tfdt);
        let mut tfxd = vec![0, 0, 0, 44];
        tfxd.extend(b"uuid");
        tfxd.extend(UUID_TFXD);
        tfxd.extend([1, 0, 0, 0]);
        tfxd.extend(5u64.to_be_bytes());
        tfxd.extend(6u64.to_be_bytes());
        traf.extend(&tfxd);
        let mut tfrf = vec![0, 0, 0, 0];
        tfrf.extend(b"uuid");
        tfrf.extend(UUID_TFRF);
        tfrf.extend([1, 0, 0, 0, 1]);
        tfrf.extend(7u64.to_be_bytes());
        tfrf.extend(8u64.to_be_bytes());
        let len = tfrf.len() as u32;
        tfrf[..4].copy_from_slice(&len.to_be_bytes());
        traf.extend(&tfrf);
        let traf_box = [
            ((traf.len() + 8) as u32).to_be_bytes().to_vec(),
            b"traf".to_vec(),
            traf,
        ]
        .concat();
        let mfhd = fbx(b"mfhd", 0, 0, &be(&[9]));
        let moof_body = [mfhd, traf_box].concat();
        let moof = Moof::parse(Reader::new(&moof_body, 8), 0, moof_body.len() as u64 + 8).unwrap();
        assert_eq!(moof.sequence_number, 9);
        let t = &moof.trafs[0];
        assert_eq!(t.base_decode_time, Some(1 << 40));
        assert_eq!(t.tfxd, Some((5, 6)));
        assert_eq!(t.tfrf, vec![(7, 8)]);
    }
}
