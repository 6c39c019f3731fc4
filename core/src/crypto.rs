//! Common Encryption (ISO/IEC 23001-7) of samples, and the boxes that describe it.
//!
//! Two schemes: `cenc` (AES-128 CTR over every protected byte of a sample, the counter running
//! on across its subsamples) and `cbcs` (AES-128 CBC over a 1:9 pattern of 16-byte blocks of
//! each subsample's protected range, the constant IV restarting at each subsample). Video
//! samples are split into subsamples by NAL unit ([`nal_subsamples`]): length prefix and NAL
//! header in the clear, the slice data protected. CTR is RustCrypto's (`aes` uses AES-NI when
//! the CPU has it). `cbcs` restarts its chain at every subsample, so the chains of a fragment
//! are independent and [`cbc_pattern_chains`] runs eight of them at once through RustCrypto's
//! parallel blocks; one long chain (HLS AES-128) is OpenSSL's EVP ([`Cbc`]), whose serial CBC
//! is the faster here (docs/BENCHMARKS.md).
//!
//! Keys never reach a log or an error message: [`ContentKey`]'s `Debug` shows the key ID only.

use std::fmt;

use aes::Aes128;
use ctr::cipher::{KeyIvInit, StreamCipher};
use openssl::cipher::Cipher;
use openssl::cipher_ctx::CipherCtx;

use crate::mp4::codec::{write_full_box, write_sinf, Tenc};
use crate::mp4::FourCC;

type Aes128Ctr = ctr::Ctr128BE<Aes128>;

/// AES block (and key, and key ID) length.
pub const BLOCK: usize = 16;

/// Why key material or a sample could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Key material that is not `KID:KEY` in hex (32 digits each) or base64 (16 bytes each).
    /// The text is never echoed: it may hold the key.
    #[error("content key: {0}")]
    BadKey(&'static str),
    /// A sample whose NAL units overrun it.
    #[error("sample of {size} bytes: a NAL unit of {nal} bytes at {at} overruns it")]
    NalOverrun { size: usize, at: usize, nal: usize },
    /// Subsamples that do not add up to the sample.
    #[error("subsamples cover {covered} bytes of a {size}-byte sample")]
    SubsampleMismatch { covered: u64, size: usize },
    /// The cipher library refused (no key material in the message).
    #[error("AES-CBC: {0}")]
    Cipher(String),
}

/// AES-128-CBC encryption, no padding, through OpenSSL's EVP interface (the libcrypto nginx
/// itself links): its AES-NI code chains blocks a quarter faster than RustCrypto's behind
/// runtime CPU detection, and CBC is serial, so that is the cost of an AES-128 HLS segment.
pub struct Cbc {
    ctx: CipherCtx,
}

impl Cbc {
    pub fn new(key: &ContentKey, iv: &[u8; BLOCK]) -> Result<Cbc, CryptoError> {
        let failed = |e: openssl::error::ErrorStack| CryptoError::Cipher(e.to_string());
        let mut ctx = CipherCtx::new().map_err(failed)?;
        ctx.encrypt_init(Some(Cipher::aes_128_cbc()), Some(&key.key), Some(iv))
            .map_err(failed)?;
        ctx.set_padding(false);
        Ok(Cbc { ctx })
    }

    /// Encrypts the first `len` bytes of `buf` (whole blocks) in place, continuing the chain.
    /// `buf` holds at least a block more than `len` (OpenSSL's room for output).
    pub fn encrypt_in_place(&mut self, buf: &mut [u8], len: usize) -> Result<(), CryptoError> {
        if len % BLOCK != 0 || buf.len() < len + BLOCK || i32::try_from(len).is_err() {
            return Err(CryptoError::Cipher(format!(
                "{len} bytes in a buffer of {} are not whole blocks with room",
                buf.len()
            )));
        }
        if len == 0 {
            return Ok(());
        }
        let written = self
            .ctx
            .cipher_update_inplace(buf, len)
            .map_err(|e| CryptoError::Cipher(e.to_string()))?;
        if written != len {
            return Err(CryptoError::Cipher(format!(
                "{written} bytes out for {len} in"
            )));
        }
        Ok(())
    }
}

/// A content key and its ID.
#[derive(Clone, PartialEq, Eq)]
pub struct ContentKey {
    pub kid: [u8; BLOCK],
    key: [u8; BLOCK],
}

impl fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContentKey")
            .field("kid", &hex(&self.kid))
            .field("key", &"…")
            .finish()
    }
}

impl ContentKey {
    pub fn new(kid: [u8; BLOCK], key: [u8; BLOCK]) -> ContentKey {
        ContentKey { kid, key }
    }

    /// `KID:KEY`, each 32 hex digits or 16 bytes in base64 (as mp4split's `--key` takes them).
    pub fn parse(text: &str) -> Result<ContentKey, CryptoError> {
        let (kid, key) = text
            .split_once(':')
            .ok_or(CryptoError::BadKey("expected KID:KEY"))?;
        Ok(ContentKey {
            kid: parse_16(kid.trim()).ok_or(CryptoError::BadKey("the key ID is not 16 bytes"))?,
            key: parse_16(key.trim()).ok_or(CryptoError::BadKey("the key is not 16 bytes"))?,
        })
    }

    /// The key itself, for the cipher only.
    pub fn key(&self) -> &[u8; BLOCK] {
        &self.key
    }

    /// The key ID as a UUID (`cenc:default_KID`).
    pub fn kid_uuid(&self) -> String {
        uuid(&self.kid)
    }
}

/// 16 bytes from 32 hex digits (dashes of a UUID allowed) or from base64 (either
/// alphabet, padding optional).
pub fn parse_16(text: &str) -> Option<[u8; BLOCK]> {
    let digits: String = text.chars().filter(|&c| c != '-').collect();
    if digits.len() == 32 && digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut out = [0u8; BLOCK];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).ok()?;
        }
        return Some(out);
    }
    crate::base64::decode(text)?.try_into().ok()
}

/// Bytes from hex digits (an even number of them).
pub fn parse_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `8-4-4-4-12` hex form of 16 bytes.
pub fn uuid(bytes: &[u8; BLOCK]) -> String {
    let h = hex(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The protection scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// AES-CTR, every protected byte, an 8-byte IV per sample.
    Cenc,
    /// AES-CBC over a 1:9 block pattern (video; audio: every block), one constant IV.
    Cbcs,
}

impl Scheme {
    pub fn parse(text: &str) -> Option<Scheme> {
        match text.to_ascii_lowercase().as_str() {
            "cenc" => Some(Scheme::Cenc),
            "cbcs" => Some(Scheme::Cbcs),
            _ => None,
        }
    }

    pub fn fourcc(self) -> FourCC {
        match self {
            Scheme::Cenc => FourCC::new(b"cenc"),
            Scheme::Cbcs => FourCC::new(b"cbcs"),
        }
    }

    /// Bytes of IV stored per sample in `senc` (`cbcs` uses the constant IV of `tenc`).
    pub fn per_sample_iv_size(self) -> u8 {
        match self {
            Scheme::Cenc => 8,
            Scheme::Cbcs => 0,
        }
    }
}

/// Encrypted and skipped 16-byte blocks of a `cbcs` pattern (`crypt` 0 with `skip` 0: every
/// block, as for audio).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pattern {
    pub crypt: u8,
    pub skip: u8,
}

impl Pattern {
    /// The pattern video uses under `cbcs` (one block in ten).
    pub const VIDEO: Pattern = Pattern { crypt: 1, skip: 9 };
    /// No pattern: every whole block.
    pub const WHOLE: Pattern = Pattern { crypt: 0, skip: 0 };
}

/// One subsample: clear bytes, then protected bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subsample {
    pub clear: u16,
    pub protected: u32,
}

/// One subsample protecting all of a sample of `len` bytes.
fn whole_sample(len: usize) -> [Subsample; 1] {
    [Subsample {
        clear: 0,
        protected: len as u32,
    }]
}

/// `subsamples`, or `whole` when there are none, checked to cover exactly `len` bytes.
fn covering<'a>(
    subsamples: &'a [Subsample],
    whole: &'a [Subsample; 1],
    len: usize,
) -> Result<&'a [Subsample], CryptoError> {
    let subsamples = if subsamples.is_empty() {
        &whole[..]
    } else {
        subsamples
    };
    let covered: u64 = subsamples
        .iter()
        .map(|s| u64::from(s.clear) + u64::from(s.protected))
        .sum();
    if covered != len as u64 {
        return Err(CryptoError::SubsampleMismatch { covered, size: len });
    }
    Ok(subsamples)
}

/// Encrypts `data` in place. `subsamples` empty means the whole sample is protected (audio).
/// `iv` is the sample's counter block (`cenc`: its 8-byte IV then 8 zero bytes) or the constant
/// IV (`cbcs`).
pub fn encrypt_sample(
    scheme: Scheme,
    key: &ContentKey,
    iv: &[u8; BLOCK],
    pattern: Pattern,
    data: &mut [u8],
    subsamples: &[Subsample],
) -> Result<(), CryptoError> {
    let whole = whole_sample(data.len());
    let subsamples = covering(subsamples, &whole, data.len())?;
    match scheme {
        Scheme::Cenc => {
            // One keystream over the sample's protected bytes, in order.
            let mut cipher = Aes128Ctr::new(key.key().into(), iv.into());
            let mut at = 0usize;
            for s in subsamples {
                at += usize::from(s.clear);
                let end = at + s.protected as usize;
                cipher.apply_keystream(&mut data[at..end]);
                at = end;
            }
        }
        Scheme::Cbcs => {
            let ranges = protected_ranges(subsamples, 0);
            cbc_pattern_chains(key, iv, pattern, data, &ranges)?;
        }
    }
    Ok(())
}

/// Appends `sample` encrypted to `out`: as [`encrypt_sample`] on a copy, but `cenc` writes each
/// protected run straight from the source into `out` (one pass over the bytes instead of a
/// copy and then a pass).
pub fn encrypt_sample_into(
    scheme: Scheme,
    key: &ContentKey,
    iv: &[u8; BLOCK],
    pattern: Pattern,
    sample: &[u8],
    subsamples: &[Subsample],
    out: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    if scheme == Scheme::Cbcs {
        let at = out.len();
        out.extend_from_slice(sample);
        return encrypt_sample(scheme, key, iv, pattern, &mut out[at..], subsamples);
    }
    let whole = whole_sample(sample.len());
    let subsamples = covering(subsamples, &whole, sample.len())?;
    let mut cipher = Aes128Ctr::new(key.key().into(), iv.into());
    let mut at = 0usize;
    for s in subsamples {
        let clear_end = at + usize::from(s.clear);
        out.extend_from_slice(&sample[at..clear_end]);
        let end = clear_end + s.protected as usize;
        let from = out.len();
        out.resize(from + s.protected as usize, 0);
        cipher
            .apply_keystream_b2b(&sample[clear_end..end], &mut out[from..])
            .map_err(|_| CryptoError::SubsampleMismatch {
                covered: end as u64,
                size: sample.len(),
            })?;
        at = end;
    }
    Ok(())
}

/// The protected ranges of a sample of `len` bytes at `base` of a buffer: its subsamples'
/// (checked to cover it), or the whole sample when there are none.
pub fn sample_protected_ranges(
    subsamples: &[Subsample],
    len: usize,
    base: usize,
) -> Result<Vec<std::ops::Range<usize>>, CryptoError> {
    let whole = whole_sample(len);
    Ok(protected_ranges(covering(subsamples, &whole, len)?, base))
}

/// The protected ranges of a sample's subsamples, the sample starting at `base`.
pub fn protected_ranges(subsamples: &[Subsample], base: usize) -> Vec<std::ops::Range<usize>> {
    let mut at = base;
    subsamples
        .iter()
        .map(|s| {
            at += usize::from(s.clear);
            let range = at..at + s.protected as usize;
            at = range.end;
            range
        })
        .collect()
}

/// Parallel AES blocks per step of [`cbc_pattern_chains`] (what AES-NI pipelines).
const LANES: usize = 8;

/// `cbcs` over `ranges` of `data`: in each range, CBC from `iv` over the pattern's encrypted
/// blocks (chained through them only; a trailing partial block stays clear). Each range is a
/// chain of its own, so eight chains advance together, one block each per step, in one call
/// of the block cipher: CBC's serial dependency is within a chain, not across them.
pub fn cbc_pattern_chains(
    key: &ContentKey,
    iv: &[u8; BLOCK],
    pattern: Pattern,
    data: &mut [u8],
    ranges: &[std::ops::Range<usize>],
) -> Result<(), CryptoError> {
    use aes::cipher::{BlockEncrypt, KeyInit};
    let (crypt, skip) = if pattern.crypt == 0 {
        (1usize, 0usize)
    } else {
        (usize::from(pattern.crypt), usize::from(pattern.skip))
    };
    let group = crypt + skip;
    let cipher = Aes128::new(key.key().into());
    /// A chain in progress: its range's start, whole blocks, next block to encrypt, and the
    /// ciphertext it chains from.
    struct Lane {
        start: usize,
        blocks: usize,
        next: usize,
        prev: aes::Block,
    }
    let mut lanes: Vec<Lane> = Vec::with_capacity(LANES);
    let mut pending = ranges.iter();
    let mut batch = [aes::Block::default(); LANES];
    loop {
        while lanes.len() < LANES {
            let Some(r) = pending.next() else { break };
            if r.start > r.end || r.end > data.len() {
                return Err(CryptoError::SubsampleMismatch {
                    covered: r.end as u64,
                    size: data.len(),
                });
            }
            let blocks = (r.end - r.start) / BLOCK;
            if blocks > 0 {
                lanes.push(Lane {
                    start: r.start,
                    blocks,
                    next: 0,
                    prev: aes::Block::from(*iv),
                });
            }
        }
        if lanes.is_empty() {
            return Ok(());
        }
        for (lane, block) in lanes.iter().zip(batch.iter_mut()) {
            let at = lane.start + lane.next * BLOCK;
            for ((b, d), p) in block.iter_mut().zip(&data[at..at + BLOCK]).zip(&lane.prev) {
                *b = d ^ p;
            }
        }
        let n = lanes.len();
        cipher.encrypt_blocks(&mut batch[..n]);
        for (lane, block) in lanes.iter_mut().zip(&batch[..n]) {
            let at = lane.start + lane.next * BLOCK;
            data[at..at + BLOCK].copy_from_slice(block);
            lane.prev = *block;
            // The next block of the pattern: the next one, or the first of the next group.
            let mut next = lane.next + 1;
            if next % group >= crypt {
                next += group - next % group;
            }
            lane.next = next;
        }
        lanes.retain(|l| l.next < l.blocks);
    }
}

/// Which NAL units carry coded slices, by codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NalCodec {
    Avc,
    Hevc,
}

impl NalCodec {
    /// Bytes of the NAL unit header.
    pub fn header_len(self) -> usize {
        match self {
            NalCodec::Avc => 1,
            NalCodec::Hevc => 2,
        }
    }

    fn is_slice(self, first_byte: u8) -> bool {
        match self {
            NalCodec::Avc => matches!(first_byte & 0x1f, 1..=5),
            NalCodec::Hevc => (first_byte >> 1) & 0x3f <= 31,
        }
    }
}

/// Smallest slice payload worth protecting: a few blocks after the clear leader.
const MIN_PROTECTED: usize = BLOCK;

/// Subsamples of a video sample of length-prefixed NAL units: every NAL unit's length prefix
/// and header in the clear, and of a slice also what `slice_clear` says of it (the bytes from
/// its NAL header through its slice header), then the rest protected; parameter sets, SEI and
/// other non-slice NAL units wholly clear (`slice_clear` sees them too, with `false`, to take
/// note of parameter sets). With `align` (`cenc` video) the protected part of each NAL unit is
/// a whole number of blocks, the remainder moved into the clear, as players' decoders expect.
pub fn nal_subsamples(
    sample: &[u8],
    length_size: usize,
    codec: NalCodec,
    slice_clear: &mut dyn FnMut(&[u8], bool) -> usize,
    align: bool,
) -> Result<Vec<Subsample>, CryptoError> {
    let mut out = Vec::new();
    let mut pending_clear = 0usize;
    let mut at = 0usize;
    while at < sample.len() {
        let prefix = sample
            .get(at..at + length_size)
            .ok_or(CryptoError::NalOverrun {
                size: sample.len(),
                at,
                nal: length_size,
            })?;
        let nal_len = prefix
            .iter()
            .fold(0usize, |n, &b| (n << 8) | usize::from(b));
        let total = length_size + nal_len;
        if at + total > sample.len() || nal_len == 0 {
            return Err(CryptoError::NalOverrun {
                size: sample.len(),
                at,
                nal: nal_len,
            });
        }
        let is_slice = codec.is_slice(sample[at + length_size]);
        let body = &sample[at + length_size..at + total];
        let leader = length_size + slice_clear(body, is_slice).max(codec.header_len());
        let mut protected = if is_slice && total >= leader + MIN_PROTECTED {
            total - leader
        } else {
            0
        };
        if align {
            protected -= protected % BLOCK;
        }
        pending_clear += total - protected;
        if protected > 0 {
            push_subsample(&mut out, pending_clear, protected as u32);
            pending_clear = 0;
        }
        at += total;
    }
    if pending_clear > 0 {
        push_subsample(&mut out, pending_clear, 0);
    }
    Ok(out)
}

/// Appends (clear, protected), splitting a clear run longer than `senc`'s 16-bit field.
fn push_subsample(out: &mut Vec<Subsample>, mut clear: usize, protected: u32) {
    while clear > usize::from(u16::MAX) {
        out.push(Subsample {
            clear: u16::MAX,
            protected: 0,
        });
        clear -= usize::from(u16::MAX);
    }
    out.push(Subsample {
        clear: clear as u16,
        protected,
    });
}

/// What a track's `tenc` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackEncryption {
    pub scheme: Scheme,
    pub kid: [u8; BLOCK],
    /// `cbcs`: the pattern (`Pattern::WHOLE` for audio) and the constant IV.
    pub pattern: Pattern,
    pub constant_iv: Option<[u8; BLOCK]>,
}

impl TrackEncryption {
    /// The `tenc` of the track: `cbcs` writes its pattern and its constant IV (zero when none
    /// was given).
    pub fn tenc(&self) -> Tenc<'_> {
        const ZERO_IV: [u8; BLOCK] = [0; BLOCK];
        Tenc {
            kid: self.kid,
            per_sample_iv_size: self.scheme.per_sample_iv_size(),
            pattern: (self.scheme == Scheme::Cbcs)
                .then_some((self.pattern.crypt, self.pattern.skip)),
            constant_iv: Some(self.constant_iv.as_ref().unwrap_or(&ZERO_IV)),
        }
    }
}

/// A sample entry (whole box, as stored in `stsd`) made protected: `encv`/`enca` with a `sinf`
/// appended. `None` when `entry` is not a box.
pub fn protect_sample_entry(entry: &[u8], video: bool, t: &TrackEncryption) -> Option<Vec<u8>> {
    if entry.len() < 8 || u32::from_be_bytes(entry[0..4].try_into().ok()?) as usize != entry.len() {
        return None;
    }
    let original = FourCC([entry[4], entry[5], entry[6], entry[7]]);
    let mut out = entry.to_vec();
    out[4..8].copy_from_slice(if video { b"encv" } else { b"enca" });
    write_sinf(&mut out, original, t.scheme.fourcc(), &t.tenc());
    let size = u32::try_from(out.len()).ok()?;
    out[0..4].copy_from_slice(&size.to_be_bytes());
    Some(out)
}

/// `pssh` version 1 (with key IDs) for `system_id`, carrying `data`.
pub fn write_pssh(out: &mut Vec<u8>, system_id: &[u8; BLOCK], kids: &[[u8; BLOCK]], data: &[u8]) {
    write_full_box(out, FourCC::new(b"pssh"), 1, 0, |b| {
        b.extend_from_slice(system_id);
        b.extend_from_slice(&(kids.len() as u32).to_be_bytes());
        for kid in kids {
            b.extend_from_slice(kid);
        }
        b.extend_from_slice(&(data.len() as u32).to_be_bytes());
        b.extend_from_slice(data);
    });
}

/// The auxiliary information of one sample: its per-sample IV and subsamples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleAux {
    pub iv: Vec<u8>,
    pub subsamples: Vec<Subsample>,
}

impl SampleAux {
    /// Bytes it takes in `senc` (and what `saiz` says of it).
    pub fn size(&self, with_subsamples: bool) -> usize {
        self.iv.len()
            + if with_subsamples {
                2 + 6 * self.subsamples.len()
            } else {
                0
            }
    }
}

/// `senc` for a fragment's samples; returns the offset of the first sample's information
/// from the start of `out` as it was on entry (what `saio` must point at, relative to where
/// the caller places this box).
pub fn write_senc(out: &mut Vec<u8>, samples: &[SampleAux], with_subsamples: bool) -> usize {
    let start = out.len();
    let mut first = 0;
    write_full_box(
        out,
        FourCC::new(b"senc"),
        0,
        if with_subsamples { 0x2 } else { 0 },
        |b| {
            b.extend_from_slice(&(samples.len() as u32).to_be_bytes());
            first = b.len() - start;
            for s in samples {
                b.extend_from_slice(&s.iv);
                if with_subsamples {
                    b.extend_from_slice(&(s.subsamples.len() as u16).to_be_bytes());
                    for sub in &s.subsamples {
                        b.extend_from_slice(&sub.clear.to_be_bytes());
                        b.extend_from_slice(&sub.protected.to_be_bytes());
                    }
                }
            }
        },
    );
    first
}

/// `saiz`: each sample's auxiliary information size (one default when all are equal).
pub fn write_saiz(out: &mut Vec<u8>, samples: &[SampleAux], with_subsamples: bool) {
    let sizes: Vec<usize> = samples.iter().map(|s| s.size(with_subsamples)).collect();
    let same = sizes.windows(2).all(|w| w[0] == w[1]);
    write_full_box(out, FourCC::new(b"saiz"), 0, 0, |b| {
        let default = if same {
            sizes.first().copied().unwrap_or(0)
        } else {
            0
        };
        b.push(u8::try_from(default).unwrap_or(0));
        b.extend_from_slice(&(samples.len() as u32).to_be_bytes());
        if !same || default > usize::from(u8::MAX) {
            b.extend(sizes.iter().map(|&s| u8::try_from(s).unwrap_or(u8::MAX)));
        }
    });
}

/// `saio` with one offset: where the first sample's information is, from the `moof`'s start
/// (with `default-base-is-moof`).
pub fn write_saio(out: &mut Vec<u8>, offset_from_moof: u32) {
    write_full_box(out, FourCC::new(b"saio"), 0, 0, |b| {
        b.extend_from_slice(&1u32.to_be_bytes());
        b.extend_from_slice(&offset_from_moof.to_be_bytes());
    });
}

/// DRM system IDs.
pub mod system {
    /// Common (W3C `cenc` key IDs) PSSH.
    pub const COMMON: [u8; 16] = [
        0x10, 0x77, 0xef, 0xec, 0xc0, 0xb2, 0x4d, 0x02, 0xac, 0xe3, 0x3c, 0x1e, 0x52, 0xe2, 0xfb,
        0x4b,
    ];
    pub const PLAYREADY: [u8; 16] = [
        0x9a, 0x04, 0xf0, 0x79, 0x98, 0x40, 0x42, 0x86, 0xab, 0x92, 0xe6, 0x5b, 0xe0, 0x88, 0x5f,
        0x95,
    ];
    pub const WIDEVINE: [u8; 16] = [
        0xed, 0xef, 0x8b, 0xa9, 0x79, 0xd6, 0x4a, 0xce, 0xa3, 0xc8, 0x27, 0xdc, 0xd5, 0x1d, 0x21,
        0xed,
    ];
    pub const CLEARKEY: [u8; 16] = [
        0xe2, 0x71, 0x9d, 0x58, 0xa9, 0x85, 0xb3, 0xc9, 0x78, 0x1a, 0xb0, 0x30, 0xaf, 0x78, 0xd3,
        0x0e,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;
    /// The pattern CBC, block by block with RustCrypto's CBC: the reference.
    fn pattern_reference(key: &ContentKey, iv: &[u8; BLOCK], pattern: Pattern, range: &mut [u8]) {
        use cbc::cipher::BlockEncryptMut;
        let mut c = cbc::Encryptor::<Aes128>::new(key.key().into(), iv.into());
        let (crypt, skip) = if pattern.crypt == 0 {
            (1, 0)
        } else {
            (usize::from(pattern.crypt), usize::from(pattern.skip))
        };
        for (n, block) in range.chunks_exact_mut(BLOCK).enumerate() {
            if n % (crypt + skip) < crypt {
                c.encrypt_block_mut(block.into());
            }
        }
    }

    #[test]
    fn chains_side_by_side_match_each_chain_alone() {
        let key = ContentKey::new([1; 16], [0x5a; 16]);
        let iv = [7u8; 16];
        // Nineteen ranges of assorted lengths (more than the lanes, some shorter than a
        // block), with clear bytes between.
        let mut ranges = Vec::new();
        let mut at = 3usize;
        for k in 0..19usize {
            let len = [0usize, 15, 16, 40, 160, 333, 1600, 4099][k % 8] + k;
            ranges.push(at..at + len);
            at += len + 7;
        }
        let data: Vec<u8> = (0..at).map(|i| (i * 13) as u8).collect();
        for pattern in [Pattern { crypt: 1, skip: 9 }, Pattern { crypt: 0, skip: 0 }] {
            let mut together = data.clone();
            cbc_pattern_chains(&key, &iv, pattern, &mut together, &ranges).unwrap();
            let mut alone = data.clone();
            for r in &ranges {
                pattern_reference(&key, &iv, pattern, &mut alone[r.clone()]);
            }
            assert_eq!(together, alone, "{pattern:?}");
        }
        let mut short = vec![0u8; 10];
        assert!(cbc_pattern_chains(
            &key,
            &iv,
            Pattern::VIDEO,
            &mut short,
            std::slice::from_ref(&(0..11))
        )
        .is_err());
    }

    #[test]
    fn gathered_pattern_cbc_matches_block_by_block() {
        let key = ContentKey::new([1; 16], [0x5a; 16]);
        let iv = [7u8; 16];
        for pattern in [
            Pattern { crypt: 1, skip: 9 },
            Pattern { crypt: 2, skip: 3 },
            Pattern { crypt: 0, skip: 0 },
        ] {
            for len in [0usize, 5, 16, 17, 159, 160, 161, 176, 1000, 4099] {
                let data: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
                let mut ours = data.clone();
                cbc_pattern_chains(
                    &key,
                    &iv,
                    pattern,
                    &mut ours,
                    std::slice::from_ref(&(0..len)),
                )
                .unwrap();
                let mut reference = data.clone();
                pattern_reference(&key, &iv, pattern, &mut reference);
                assert_eq!(ours, reference, "{pattern:?} over {len} bytes");
            }
        }
        // Another key between uses: the reused context takes the new one.
        let other = ContentKey::new([2; 16], [0x33; 16]);
        let mut ours = vec![9u8; 320];
        let mut reference = ours.clone();
        cbc_pattern_chains(
            &other,
            &iv,
            Pattern { crypt: 1, skip: 9 },
            &mut ours,
            std::slice::from_ref(&(0..320)),
        )
        .unwrap();
        pattern_reference(&other, &iv, Pattern { crypt: 1, skip: 9 }, &mut reference);
        assert_eq!(ours, reference);
    }
    use cbc::cipher::BlockDecryptMut;

    fn bytes(h: &str) -> Vec<u8> {
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect()
    }

    fn block(h: &str) -> [u8; 16] {
        bytes(h).try_into().unwrap()
    }

    /// NIST SP 800-38A's key.
    fn nist_key() -> ContentKey {
        ContentKey::new([0; 16], block("2b7e151628aed2a6abf7158809cf4f3c"))
    }

    const PLAIN: &str = "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51";

    #[test]
    fn ctr_matches_nist_sp800_38a() {
        let mut data = bytes(PLAIN);
        let iv = block("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
        encrypt_sample(
            Scheme::Cenc,
            &nist_key(),
            &iv,
            Pattern::WHOLE,
            &mut data,
            &[],
        )
        .unwrap();
        assert_eq!(
            data,
            bytes("874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff")
        );
    }

    #[test]
    fn cbc_matches_nist_sp800_38a() {
        let mut data = bytes(PLAIN);
        let iv = block("000102030405060708090a0b0c0d0e0f");
        encrypt_sample(
            Scheme::Cbcs,
            &nist_key(),
            &iv,
            Pattern::WHOLE,
            &mut data,
            &[],
        )
        .unwrap();
        assert_eq!(
            data,
            bytes("7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2")
        );
    }

    #[test]
    fn cenc_subsamples_keep_clear_bytes_and_run_one_counter() {
        let plain: Vec<u8> = (0..100u8).collect();
        let subs = [
            Subsample {
                clear: 10,
                protected: 32,
            },
            Subsample {
                clear: 6,
                protected: 52,
            },
        ];
        let iv = [7u8; 16];
        let mut data = plain.clone();
        encrypt_sample(
            Scheme::Cenc,
            &nist_key(),
            &iv,
            Pattern::WHOLE,
            &mut data,
            &subs,
        )
        .unwrap();
        assert_eq!(data[..10], plain[..10]);
        assert_eq!(data[42..48], plain[42..48]);
        // The protected bytes are the plain ones under one keystream.
        let mut protected: Vec<u8> = plain[10..42].iter().chain(&plain[48..]).copied().collect();
        Aes128Ctr::new(nist_key().key().into(), (&iv).into()).apply_keystream(&mut protected);
        let got: Vec<u8> = data[10..42].iter().chain(&data[48..]).copied().collect();
        assert_eq!(got, protected);
        let short = [Subsample {
            clear: 1,
            protected: 2,
        }];
        assert!(matches!(
            encrypt_sample(
                Scheme::Cenc,
                &nist_key(),
                &iv,
                Pattern::WHOLE,
                &mut data,
                &short
            ),
            Err(CryptoError::SubsampleMismatch { .. })
        ));
    }

    #[test]
    fn cbcs_encrypts_one_block_in_ten_and_leaves_the_tail_clear() {
        let plain: Vec<u8> = (0..=255u8).cycle().take(16 * 23 + 5).collect();
        let iv = [3u8; 16];
        let mut data = plain.clone();
        let subs = [Subsample {
            clear: 0,
            protected: data.len() as u32,
        }];
        encrypt_sample(
            Scheme::Cbcs,
            &nist_key(),
            &iv,
            Pattern::VIDEO,
            &mut data,
            &subs,
        )
        .unwrap();
        let blocks = |d: &[u8], n: usize| d[n * 16..n * 16 + 16].to_vec();
        for n in 0..23 {
            let encrypted = n % 10 == 0;
            assert_eq!(
                blocks(&data, n) != blocks(&plain, n),
                encrypted,
                "block {n}"
            );
        }
        assert_eq!(data[16 * 23..], plain[16 * 23..]);
        // Decrypting the encrypted blocks as one CBC chain gives the plain ones back.
        let mut dec = cbc::Decryptor::<Aes128>::new(nist_key().key().into(), (&iv).into());
        for n in [0, 10, 20] {
            let mut b = blocks(&data, n);
            dec.decrypt_block_mut(b.as_mut_slice().into());
            assert_eq!(b, blocks(&plain, n));
        }
    }

    #[test]
    fn encrypting_into_a_buffer_equals_encrypting_in_place() {
        let key = ContentKey::new([5; 16], [6; 16]);
        let sample: Vec<u8> = (0..5000u32).map(|i| (i * 31 % 251) as u8).collect();
        let maps = [
            vec![],
            vec![
                Subsample {
                    clear: 17,
                    protected: 1600,
                },
                Subsample {
                    clear: 0,
                    protected: 3,
                },
                Subsample {
                    clear: 380,
                    protected: 3000,
                },
            ],
        ];
        for scheme in [Scheme::Cenc, Scheme::Cbcs] {
            for subs in &maps {
                let mut in_place = sample.clone();
                encrypt_sample(scheme, &key, &[9; 16], Pattern::VIDEO, &mut in_place, subs)
                    .unwrap();
                let mut out = vec![0xee];
                encrypt_sample_into(
                    scheme,
                    &key,
                    &[9; 16],
                    Pattern::VIDEO,
                    &sample,
                    subs,
                    &mut out,
                )
                .unwrap();
                assert_eq!(&out[1..], &in_place[..]);
            }
        }
        let mut out = Vec::new();
        let short = [Subsample {
            clear: 1,
            protected: 1,
        }];
        assert!(encrypt_sample_into(
            Scheme::Cenc,
            &key,
            &[0; 16],
            Pattern::WHOLE,
            &sample,
            &short,
            &mut out
        )
        .is_err());
    }

    fn nal(header: &[u8], len: usize) -> Vec<u8> {
        let mut n = ((header.len() + len) as u32).to_be_bytes().to_vec();
        n.extend_from_slice(header);
        n.extend((0..len).map(|i| i as u8));
        n
    }

    #[test]
    fn nal_subsamples_clear_headers_and_non_slices() {
        // SEI (clear), IDR slice, a tiny slice (too small to protect), another slice.
        let sample = [
            nal(&[0x06], 20),
            nal(&[0x65], 300),
            nal(&[0x41], 5),
            nal(&[0x41], 100),
        ]
        .concat();
        let subs = nal_subsamples(&sample, 4, NalCodec::Avc, &mut |_, _| 1, true).unwrap();
        let total: u64 = subs
            .iter()
            .map(|s| u64::from(s.clear) + u64::from(s.protected))
            .sum();
        assert_eq!(total, sample.len() as u64);
        assert!(subs.iter().all(|s| s.protected % 16 == 0));
        assert_eq!(subs.len(), 2);
        // SEI whole + the IDR's prefix and header, and its unaligned remainder.
        assert_eq!(usize::from(subs[0].clear), 4 + 21 + 4 + 1 + (300 % 16));
        assert_eq!(subs[0].protected, 300 - 300 % 16);
        // Unaligned (cbcs): only prefix and header clear.
        let subs = nal_subsamples(&sample, 4, NalCodec::Avc, &mut |_, _| 1, false).unwrap();
        assert_eq!(usize::from(subs[0].clear), 4 + 21 + 4 + 1);
        assert_eq!(subs[0].protected, 300);
        // HEVC: two-byte headers; VPS (32) clear.
        let hevc = [nal(&[0x40, 0x01], 30), nal(&[0x26, 0x01], 64)].concat();
        let subs = nal_subsamples(&hevc, 4, NalCodec::Hevc, &mut |_, _| 2, false).unwrap();
        assert_eq!(
            subs,
            vec![Subsample {
                clear: 4 + 32 + 4 + 2,
                protected: 64
            }]
        );
        // A NAL unit that overruns the sample.
        let mut bad = nal(&[0x65], 40);
        bad.truncate(30);
        assert!(nal_subsamples(&bad, 4, NalCodec::Avc, &mut |_, _| 1, true).is_err());
    }

    #[test]
    fn keys_parse_from_hex_or_base64_and_never_print() {
        let hexed =
            ContentKey::parse("10000000100010001000100000000001:3a2a1b68dd2bd9b2eeb25e84c4776668")
                .unwrap();
        assert_eq!(hexed.kid_uuid(), "10000000-1000-1000-1000-100000000001");
        let b64 = ContentKey::parse("EAAAABAAEAAQABAAAAAAAQ==:OiobaN0r2bLusl6ExHdmaA==").unwrap();
        assert_eq!(b64, hexed);
        let shown = format!("{hexed:?}");
        assert!(!shown.contains("3a2a1b68") && shown.contains("1000000010001000"));
        for bad in [
            "",
            "abc",
            "1234:5678",
            "zz000000100010001000100000000001:3a2a1b68dd2bd9b2eeb25e84c4776668",
        ] {
            let e = ContentKey::parse(bad).unwrap_err().to_string();
            assert!(!e.contains("3a2a"), "{e}");
        }
    }

    #[test]
    fn a_protected_sample_entry_reads_back_with_its_protection() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/ladder-video-360.mp4");
        let src = crate::source::MmapSource::open(&path).unwrap();
        let index = crate::index::build_index(&src).unwrap();
        let entry = &index.tracks[0].sample_entry;
        for (t, iv_size, constant_iv) in [
            (
                TrackEncryption {
                    scheme: Scheme::Cbcs,
                    kid: [0x11; 16],
                    pattern: Pattern::VIDEO,
                    constant_iv: Some([0x22; 16]),
                },
                0,
                Some(vec![0x22; 16]),
            ),
            (
                TrackEncryption {
                    scheme: Scheme::Cenc,
                    kid: [0x33; 16],
                    pattern: Pattern::WHOLE,
                    constant_iv: None,
                },
                8,
                None,
            ),
        ] {
            let protected = protect_sample_entry(entry, true, &t).unwrap();
            let mut r = crate::mp4::Reader::new(&protected, 0);
            let (h, body) = r.next_box_body().unwrap().unwrap();
            let parsed = crate::mp4::codec::parse_sample_entry(h.fourcc, body).unwrap();
            assert_eq!(
                parsed.protection,
                Some(crate::mp4::codec::Protection {
                    scheme: t.scheme.fourcc(),
                    original_format: FourCC::new(b"avc1"),
                    default_kid: t.kid,
                    per_sample_iv_size: iv_size,
                    constant_iv,
                })
            );
        }
    }

    #[test]
    fn boxes_have_the_layout_players_read() {
        let t = TrackEncryption {
            scheme: Scheme::Cbcs,
            kid: [0x11; 16],
            pattern: Pattern::VIDEO,
            constant_iv: Some([0x22; 16]),
        };
        let mut tenc = Vec::new();
        crate::mp4::codec::write_tenc(&mut tenc, &t.tenc());
        assert_eq!(&tenc[4..8], b"tenc");
        assert_eq!(tenc[8], 1); // version 1: the pattern
        assert_eq!(tenc[13], 0x19);
        assert_eq!(&tenc[14..16], &[1, 0]); // protected, no per-sample IV
        assert_eq!(tenc[32], 16);
        assert_eq!(tenc.len(), 8 + 4 + 4 + 16 + 1 + 16);
        // A sample entry made protected keeps its body and gains a sinf.
        let entry = [&28u32.to_be_bytes()[..], b"avc1", &[9; 20]].concat();
        let protected = protect_sample_entry(&entry, true, &t).unwrap();
        assert_eq!(&protected[4..8], b"encv");
        assert_eq!(
            u32::from_be_bytes(protected[..4].try_into().unwrap()) as usize,
            protected.len()
        );
        assert_eq!(&protected[28 + 4..28 + 8], b"sinf");
        assert_eq!(&protected[28 + 16..28 + 20], b"avc1"); // frma
                                                           // senc / saiz agree on each sample's size.
        let samples = vec![
            SampleAux {
                iv: vec![1; 8],
                subsamples: vec![Subsample {
                    clear: 5,
                    protected: 32,
                }],
            },
            SampleAux {
                iv: vec![2; 8],
                subsamples: vec![],
            },
        ];
        let mut senc = Vec::new();
        let first = write_senc(&mut senc, &samples, true);
        assert_eq!(first, 16);
        assert_eq!(senc.len(), 16 + (8 + 2 + 6) + (8 + 2));
        assert_eq!(u32::from_be_bytes(senc[8..12].try_into().unwrap()), 2);
        let mut saiz = Vec::new();
        write_saiz(&mut saiz, &samples, true);
        assert_eq!(saiz[12], 0);
        assert_eq!(&saiz[17..], &[16, 10]);
        let mut pssh = Vec::new();
        write_pssh(&mut pssh, &system::COMMON, &[[0x11; 16]], &[]);
        assert_eq!(pssh.len(), 8 + 4 + 16 + 4 + 16 + 4);
    }
}
