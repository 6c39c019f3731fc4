//! Common Encryption signalling in a sample entry: the protection scheme information box
//! (`sinf` with `frma`, `schm` and `schi`, ISO/IEC 14496-12 §8.12) and the track encryption
//! box (`tenc`, ISO/IEC 23001-7 §8.2).

use super::{next_child, write_box, write_full_box, Protection};
use crate::mp4::{FourCC, Mp4Error, Reader};

const SINF: FourCC = FourCC::new(b"sinf");
const FRMA: FourCC = FourCC::new(b"frma");
const SCHM: FourCC = FourCC::new(b"schm");
const SCHI: FourCC = FourCC::new(b"schi");
const TENC: FourCC = FourCC::new(b"tenc");

/// The Common Encryption schemes (ISO/IEC 23001-7 §4.2), which require a `tenc`.
fn is_common_encryption(scheme: FourCC) -> bool {
    matches!(&scheme.0, b"cenc" | b"cbc1" | b"cens" | b"cbcs")
}

/// The pattern schemes, whose `tenc` is version 1 with a crypt/skip pattern.
fn uses_pattern(scheme: FourCC) -> bool {
    matches!(&scheme.0, b"cens" | b"cbcs")
}

type TrackEncryption = ([u8; 16], u8, Option<Vec<u8>>);

/// Parses a `sinf` body.
pub(super) fn parse_sinf(mut r: Reader<'_>) -> Result<Protection, Mp4Error> {
    let offset = r.offset();
    let mut original_format = None;
    let mut scheme = None;
    let mut tenc = None;
    while let Some((header, mut body)) = next_child(&mut r)? {
        match header.fourcc {
            FRMA if original_format.is_none() => original_format = Some(body.fourcc()?),
            SCHM if scheme.is_none() => {
                body.full_box()?;
                scheme = Some(body.fourcc()?);
            }
            SCHI => {
                while let Some((header, body)) = next_child(&mut body)? {
                    if header.fourcc == TENC && tenc.is_none() {
                        tenc = Some(parse_tenc(body)?);
                    }
                }
            }
            _ => {}
        }
    }
    let missing = |missing| Mp4Error::Missing {
        missing,
        parent: SINF,
        offset,
    };
    let original_format = original_format.ok_or_else(|| missing(FRMA))?;
    let scheme = scheme.ok_or_else(|| missing(SCHM))?;
    let (default_kid, per_sample_iv_size, constant_iv) = match tenc {
        Some(t) => t,
        None if is_common_encryption(scheme) => return Err(missing(TENC)),
        None => ([0; 16], 0, None),
    };
    Ok(Protection {
        scheme,
        original_format,
        default_kid,
        per_sample_iv_size,
        constant_iv,
    })
}

fn parse_tenc(mut r: Reader<'_>) -> Result<TrackEncryption, Mp4Error> {
    let (version, _flags) = r.full_box()?;
    if version > 1 {
        return Err(super::unsupported(&r, "tenc version"));
    }
    r.u8()?; // reserved
    r.u8()?; // reserved (v0) or default_crypt_byte_block / default_skip_byte_block (v1)
    let is_protected = r.u8()?;
    let per_sample_iv_size = r.u8()?;
    if !matches!(per_sample_iv_size, 0 | 8 | 16) {
        return Err(r.error("tenc: default_Per_Sample_IV_Size is not 0, 8 or 16"));
    }
    let kid = r.uuid()?;
    let constant_iv = if is_protected == 1 && per_sample_iv_size == 0 {
        let size = r.u8()?;
        if size != 8 && size != 16 {
            return Err(r.error("tenc: default_constant_IV_size is not 8 or 16"));
        }
        Some(r.bytes(usize::from(size))?.to_vec())
    } else {
        None
    };
    Ok((kid, per_sample_iv_size, constant_iv))
}

/// What a written `tenc` says (ISO/IEC 23001-7 §8.2): the track is protected with `kid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tenc<'a> {
    pub kid: [u8; 16],
    /// `default_Per_Sample_IV_Size`: 0, 8 or 16.
    pub per_sample_iv_size: u8,
    /// `default_crypt_byte_block` and `default_skip_byte_block` of a pattern scheme (`cbcs`,
    /// `cens`): the box is then version 1.
    pub pattern: Option<(u8, u8)>,
    /// `default_constant_IV`, written when the per-sample IV size is 0.
    pub constant_iv: Option<&'a [u8]>,
}

/// Writes a `tenc` box.
pub fn write_tenc(out: &mut Vec<u8>, t: &Tenc<'_>) {
    write_full_box(out, TENC, u8::from(t.pattern.is_some()), 0, |out| {
        out.push(0); // reserved
        out.push(
            t.pattern
                .map_or(0, |(crypt, skip)| (crypt << 4) | (skip & 0x0f)),
        );
        out.push(1); // default_isProtected
        out.push(t.per_sample_iv_size);
        out.extend_from_slice(&t.kid);
        if t.per_sample_iv_size == 0 {
            if let Some(iv) = t.constant_iv {
                let iv = &iv[..iv.len().min(16)];
                out.push(iv.len() as u8);
                out.extend_from_slice(iv);
            }
        }
    });
}

/// Writes a `sinf` box: `frma` (the format before encryption), `schm` (`scheme`, version 1.0)
/// and `schi` with the `tenc`.
pub fn write_sinf(out: &mut Vec<u8>, original_format: FourCC, scheme: FourCC, tenc: &Tenc<'_>) {
    write_box(out, SINF, |out| {
        write_box(out, FRMA, |out| out.extend_from_slice(&original_format.0));
        write_full_box(out, SCHM, 0, 0, |out| {
            out.extend_from_slice(&scheme.0);
            out.extend_from_slice(&0x0001_0000u32.to_be_bytes());
        });
        write_box(out, SCHI, |out| write_tenc(out, tenc));
    });
}

/// Writes the `sinf` a parsed [`Protection`] describes. `cbcs` and `cens` get a version 1
/// `tenc` with the 1:9 pattern that CMAF and HLS use ([`Protection`] does not carry the
/// pattern).
pub(super) fn write_protection(p: &Protection, out: &mut Vec<u8>) {
    let tenc = Tenc {
        kid: p.default_kid,
        per_sample_iv_size: p.per_sample_iv_size,
        pattern: uses_pattern(p.scheme).then_some((1, 9)),
        constant_iv: p.constant_iv.as_deref(),
    };
    write_sinf(out, p.original_format, p.scheme, &tenc);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(p: &Protection) -> Protection {
        let mut out = Vec::new();
        write_protection(p, &mut out);
        parse_sinf(Reader::new(&out[8..], 8).with_context(SINF)).unwrap()
    }

    #[test]
    fn cenc_and_cbcs() {
        let cenc = Protection {
            scheme: FourCC::new(b"cenc"),
            original_format: FourCC::new(b"avc1"),
            default_kid: [0x11; 16],
            per_sample_iv_size: 8,
            constant_iv: None,
        };
        assert_eq!(round_trip(&cenc), cenc);
        let cbcs = Protection {
            scheme: FourCC::new(b"cbcs"),
            original_format: FourCC::new(b"mp4a"),
            default_kid: [0x22; 16],
            per_sample_iv_size: 0,
            constant_iv: Some(vec![0x33; 16]),
        };
        assert_eq!(round_trip(&cbcs), cbcs);
    }

    #[test]
    fn missing_and_bad_boxes() {
        let p = Protection {
            scheme: FourCC::new(b"cenc"),
            original_format: FourCC::new(b"avc1"),
            default_kid: [0x11; 16],
            per_sample_iv_size: 16,
            constant_iv: None,
        };
        let mut out = Vec::new();
        write_protection(&p, &mut out);
        // Cut at every length: errors, no panics.
        for len in 8..out.len() {
            assert!(
                parse_sinf(Reader::new(&out[8..len], 8)).is_err(),
                "len {len}"
            );
        }
        // A bad IV size.
        let iv_at = out.len() - 17;
        out[iv_at] = 7;
        assert!(parse_sinf(Reader::new(&out[8..], 8)).is_err());
        // No tenc for a Common Encryption scheme.
        let mut sinf = Vec::new();
        write_box(&mut sinf, FRMA, |o| o.extend_from_slice(b"avc1"));
        write_full_box(&mut sinf, SCHM, 0, 0, |o| {
            o.extend_from_slice(b"cenc");
            o.extend_from_slice(&[0, 1, 0, 0]);
        });
        assert!(matches!(
            parse_sinf(Reader::new(&sinf, 0)),
            Err(Mp4Error::Missing { missing: TENC, .. })
        ));
    }
}
