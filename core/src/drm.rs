//! Content protection of a presentation: what its server manifest (and a location's
//! `origin_drm` overrides) configure, and how each format applies it — protected init
//! segments, encrypted CMAF and Smooth fragments, whole-segment AES-128 for HLS, and the
//! signalling each manifest carries.
//!
//! The options are the reference tool's: `<paramGroup id="iss|widevine|hls">` of the `.ism`
//! with `key` (`KID:CEK`), `key_iv`, `license_server_url` and `drm_specific_data`, plus the flat
//! `<fmt>_playout` metas. Ours on top: `iss.scheme` (`cenc` or `cbcs`), `iss.video_key` /
//! `iss.audio_key` (a key per track kind) and `clearkey.license_server_url`.
//!
//! IVs are derived, never random: a fragment is the same bytes whichever worker or CDN miss
//! makes it, and no two samples under one key share a counter block (`cenc`: the track's base
//! plus the sample's absolute number).

use std::fmt::Write as _;
use std::sync::Arc;

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes128;

use crate::crypto::{
    self, encrypt_sample_into, nal_subsamples, parse_16, parse_hex, system, write_pssh, write_saio,
    write_saiz, write_senc, ContentKey, CryptoError, NalCodec, Pattern, SampleAux, Scheme,
    TrackEncryption, BLOCK,
};
use crate::format::Format;
use crate::fragment::FragmentPlan;
use crate::index::{TrackIndex, TrackKind};
use crate::ism::Meta;
use crate::markup::xml_escape;
use crate::mp4::codec::{AvcSliceHeaders, CodecConfig, HevcSliceHeaders, SampleEntry};
use crate::mp4::{FourCC, Reader};
use crate::source::{Source, SourceError};

/// The options kept in `paramGroup`s (`<group>.<name>`): what `ismtool create --iss.key=…`
/// writes there and `origin_drm` may set.
pub const GROUP_OPTIONS: [&str; 15] = [
    "iss.key",
    "iss.video_key",
    "iss.audio_key",
    "iss.key_iv",
    "iss.license_server_url",
    "iss.drm_specific_data",
    "iss.scheme",
    "widevine.key",
    "widevine.license_server_url",
    "widevine.drm_specific_data",
    "clearkey.key",
    "clearkey.license_server_url",
    "hls.key",
    "hls.key_iv",
    "hls.license_server_url",
];

/// The flat metas of content protection.
pub const PLAYOUT_OPTIONS: [&str; 4] = ["iss_playout", "mpd_playout", "hls_playout", "hds_playout"];

/// The `<fmt>_playout` meta's prefix of a streaming format.
fn meta_prefix(format: Format) -> Option<&'static str> {
    match format {
        Format::Smooth => Some("iss"),
        Format::Dash => Some("mpd"),
        Format::Hls => Some("hls"),
        Format::Hds => Some("hds"),
        _ => None,
    }
}

/// What `<fmt>_playout` says of a format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Playout {
    /// Protected when protection is configured for it; refused when protection is configured
    /// only for other formats (a clear copy would defeat it).
    #[default]
    Default,
    /// `clear`: served unprotected even when other formats are protected.
    Clear,
    /// `false`: not served.
    Disabled,
}

/// Why a fragment could not be encrypted.
#[derive(Debug, thiserror::Error)]
pub enum EncryptError {
    /// Its samples could not be read.
    #[error("{0}")]
    Source(#[from] SourceError),
    /// A sample could not be encrypted (subsamples that do not cover it).
    #[error("{0}")]
    Drm(#[from] DrmError),
    /// The planned header has no `traf` to add the encryption boxes to.
    #[error("fragment header without traf")]
    NoTraf,
}

/// Why protection cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DrmError {
    /// An option with a value that cannot be used. The value is never echoed: it may be a key.
    #[error("content protection option {option}: {reason}")]
    BadOption {
        option: String,
        reason: &'static str,
    },
    /// The format is switched off (`<fmt>_playout` false), or would be clear while others
    /// are protected.
    #[error("{format} is not served for this presentation: {why}")]
    FormatDisabled {
        format: &'static str,
        why: &'static str,
    },
    /// A combination this origin does not produce.
    #[error("{0}")]
    Unsupported(String),
    /// A sample that cannot be split into subsamples.
    #[error("{0}")]
    Sample(#[from] CryptoError),
}

/// The content protection of a presentation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Drm {
    /// Common Encryption for DASH, Smooth and CMAF (the `iss`, `widevine`, `clearkey` groups).
    pub cenc: Option<Arc<Cenc>>,
    /// HLS (the `hls` group): AES-128 or SAMPLE-AES.
    pub hls: Option<Arc<HlsKey>>,
    playout: [Playout; 4],
}

/// Common Encryption settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Cenc {
    pub scheme: Scheme,
    video: ContentKey,
    audio: ContentKey,
    /// `key_iv`: 8 or 16 bytes the derived IVs start from.
    iv: Option<Vec<u8>>,
    /// PlayReady, signalled whenever the `iss` group carries a key (as the reference origin).
    pub playready: Option<PlayReady>,
    pub widevine: Option<Widevine>,
    /// The ClearKey license server (ours; the reference origin has no ClearKey).
    pub clearkey_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlayReady {
    pub license_url: Option<String>,
    /// `drm_specific_data`: a whole PlayReady Object to send instead of the generated one.
    pub pro: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Widevine {
    pub license_url: Option<String>,
    /// `drm_specific_data`: the `pssh` data (a `WidevinePsshData` message) to send instead of
    /// the generated one.
    pub pssh_data: Option<Vec<u8>>,
}

/// HLS key delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HlsMethod {
    /// `METHOD=AES-128`: whole segments in AES-128-CBC with PKCS#7 padding.
    Aes128,
    /// `METHOD=SAMPLE-AES`: `cbcs` samples (fMP4), the key at the URI.
    SampleAes,
    /// `METHOD=SAMPLE-AES` with `KEYFORMAT="com.apple.streamingkeydelivery"` (FairPlay).
    FairPlay,
}

/// The `hls` group.
#[derive(Debug, Clone, PartialEq)]
pub struct HlsKey {
    pub method: HlsMethod,
    /// The key; its ID may be all zeros (`--hls.key=:CEK`).
    key: ContentKey,
    /// `key_iv`, written as `IV=` when set; else each segment's IV is its media sequence number.
    pub iv: Option<[u8; BLOCK]>,
    /// Where players get the key (`license_server_url`).
    pub uri: String,
}

/// What a request of one format gets.
#[derive(Debug, Clone, Copy)]
pub enum Protection<'a> {
    Clear,
    Cenc(&'a Cenc),
    Hls(&'a HlsKey),
}

/// One meta by name, ASCII case-insensitively; the last one set wins (overrides come last,
/// and an empty override leaves the one before it in force).
fn meta<'m>(metas: &'m [Meta], name: &str) -> Option<&'m str> {
    metas
        .iter()
        .rev()
        .filter(|m| m.name.eq_ignore_ascii_case(name))
        .map(|m| m.content.trim())
        .find(|v| !v.is_empty())
}

fn bad(option: &str, reason: &'static str) -> DrmError {
    DrmError::BadOption {
        option: option.to_string(),
        reason,
    }
}

/// `KID:CEK` where the KID may be empty (`:CEK`, as HLS AES-128 takes it).
fn key_option(
    metas: &[Meta],
    name: &str,
    kid_optional: bool,
) -> Result<Option<ContentKey>, DrmError> {
    let Some(text) = meta(metas, name) else {
        return Ok(None);
    };
    let (kid, key) = text
        .split_once(':')
        .ok_or_else(|| bad(name, "expected KID:KEY (32 hex digits each)"))?;
    let kid = if kid.trim().is_empty() && kid_optional {
        [0; BLOCK]
    } else {
        parse_16(kid.trim())
            .ok_or_else(|| bad(name, "the key ID is not 16 bytes of hex or base64"))?
    };
    let key = parse_16(key.trim())
        .ok_or_else(|| bad(name, "the key is not 16 bytes of hex or base64"))?;
    if key == [0; BLOCK] || (!kid_optional && kid == [0; BLOCK]) {
        return Err(bad(
            name,
            "an all-zero key or key ID is not valid in any DRM system",
        ));
    }
    Ok(Some(ContentKey::new(kid, key)))
}

fn iv_option(metas: &[Meta], name: &str, sizes: &[usize]) -> Result<Option<Vec<u8>>, DrmError> {
    let Some(text) = meta(metas, name) else {
        return Ok(None);
    };
    let text = text
        .strip_prefix("0x")
        .or(text.strip_prefix("0X"))
        .unwrap_or(text);
    let expected = match sizes {
        [16] => "expected 32 hex digits (16 bytes)",
        _ => "expected 16 or 32 hex digits (8 or 16 bytes)",
    };
    match parse_hex(text) {
        Some(iv) if sizes.contains(&iv.len()) => Ok(Some(iv)),
        _ => Err(bad(name, expected)),
    }
}

fn url_option(metas: &[Meta], name: &str) -> Result<Option<String>, DrmError> {
    match meta(metas, name) {
        Some(url) if url.chars().any(|c| c.is_control() || c == '"') => Err(bad(
            name,
            "a URL must not contain quotes or control characters",
        )),
        other => Ok(other.map(str::to_string)),
    }
}

fn base64_option(metas: &[Meta], name: &str) -> Result<Option<Vec<u8>>, DrmError> {
    meta(metas, name)
        .map(|text| crate::base64::decode(text).ok_or_else(|| bad(name, "not base64")))
        .transpose()
}

impl Drm {
    /// Reads the options from a server manifest's metas (`paramGroup` metas are named
    /// `<group>.<name>`). Nothing configured is no protection.
    pub fn from_metas(metas: &[Meta]) -> Result<Drm, DrmError> {
        let mut playout = [Playout::Default; Format::PACKAGED.len()];
        for (n, format) in Format::PACKAGED.iter().enumerate() {
            let Some(prefix) = meta_prefix(*format) else {
                continue;
            };
            let name = format!("{prefix}_playout");
            playout[n] = match meta(metas, &name).map(str::to_ascii_lowercase).as_deref() {
                Some("clear") => Playout::Clear,
                Some("false") | Some("0") | Some("no") => Playout::Disabled,
                _ => Playout::Default,
            };
        }
        let cenc = Self::cenc_from(metas)?.map(Arc::new);
        let hls = Self::hls_from(metas, cenc.as_deref())?.map(Arc::new);
        Ok(Drm { cenc, hls, playout })
    }

    fn cenc_from(metas: &[Meta]) -> Result<Option<Cenc>, DrmError> {
        let iss = key_option(metas, "iss.key", false)?;
        let widevine = key_option(metas, "widevine.key", false)?;
        let clearkey = key_option(metas, "clearkey.key", false)?;
        let video_key = key_option(metas, "iss.video_key", false)?;
        let audio_key = key_option(metas, "iss.audio_key", false)?;
        // One content key for every system: each only signals it differently.
        let mut keys = [&iss, &widevine, &clearkey].into_iter().flatten();
        let default = keys.next().cloned();
        if keys.any(|k| Some(k) != default.as_ref()) {
            return Err(bad(
                "widevine.key",
                "differs from iss.key: DASH and Smooth carry one content key per track, signalled to every DRM system",
            ));
        }
        let (video, audio) = match (video_key, audio_key, default) {
            (None, None, None) => return Ok(None),
            (v, a, d) => {
                let fallback = d.clone().or(v.clone()).or(a.clone());
                let Some(fallback) = fallback else {
                    return Ok(None);
                };
                (v.unwrap_or(fallback.clone()), a.or(d).unwrap_or(fallback))
            }
        };
        let scheme = match meta(metas, "iss.scheme") {
            None => Scheme::Cenc,
            Some(s) => {
                Scheme::parse(s).ok_or_else(|| bad("iss.scheme", "expected cenc or cbcs"))?
            }
        };
        let iv = iv_option(metas, "iss.key_iv", &[8, 16])?;
        let playready = (iss.is_some() || meta(metas, "iss.license_server_url").is_some())
            .then(|| -> Result<PlayReady, DrmError> {
                Ok(PlayReady {
                    license_url: url_option(metas, "iss.license_server_url")?,
                    pro: base64_option(metas, "iss.drm_specific_data")?,
                })
            })
            .transpose()?;
        let widevine = (widevine.is_some()
            || meta(metas, "widevine.license_server_url").is_some()
            || meta(metas, "widevine.drm_specific_data").is_some())
        .then(|| -> Result<Widevine, DrmError> {
            Ok(Widevine {
                license_url: url_option(metas, "widevine.license_server_url")?,
                pssh_data: base64_option(metas, "widevine.drm_specific_data")?,
            })
        })
        .transpose()?;
        Ok(Some(Cenc {
            scheme,
            video,
            audio,
            iv,
            playready,
            widevine,
            clearkey_url: url_option(metas, "clearkey.license_server_url")?,
        }))
    }

    fn hls_from(metas: &[Meta], cenc: Option<&Cenc>) -> Result<Option<HlsKey>, DrmError> {
        let Some(key) = key_option(metas, "hls.key", true)? else {
            return Ok(None);
        };
        let method = match meta(metas, "hls_playout")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("aes") | Some("aes128") | Some("aes-128") | Some("true") => {
                HlsMethod::Aes128
            }
            Some("sample_aes") | Some("sample-aes") => HlsMethod::SampleAes,
            Some("sample_aes_streamingkeydelivery") | Some("fairplay") => HlsMethod::FairPlay,
            Some("clear") | Some("false") => return Ok(None),
            Some(_) => {
                return Err(bad(
                    "hls_playout",
                    "expected aes, sample_aes, sample_aes_streamingkeydelivery, clear or false",
                ))
            }
        };
        let uri = url_option(metas, "hls.license_server_url")?.ok_or_else(|| {
            bad(
                "hls.license_server_url",
                "HLS encryption needs the key's URL",
            )
        })?;
        let iv = iv_option(metas, "hls.key_iv", &[16])?.map(|iv| {
            let mut out = [0; BLOCK];
            out.copy_from_slice(&iv);
            out
        });
        // SAMPLE-AES samples carry a key ID in `tenc`: the iss one when the key is the same.
        let kid = if key.kid != [0; BLOCK] {
            key.kid
        } else {
            cenc.filter(|c| c.video.key() == key.key())
                .map_or([0; BLOCK], |c| c.video.kid)
        };
        Ok(Some(HlsKey {
            method,
            key: ContentKey::new(kid, *key.key()),
            iv,
            uri,
        }))
    }

    /// True when any format is protected.
    pub fn is_configured(&self) -> bool {
        self.cenc.is_some() || self.hls.is_some()
    }

    /// What a request of `format` gets, or why it is refused (anything but a streaming
    /// format is clear).
    pub fn for_format(&self, format: Format) -> Result<Protection<'_>, DrmError> {
        let Some(n) = Format::PACKAGED.iter().position(|&f| f == format) else {
            return Ok(Protection::Clear);
        };
        let configured = match format {
            Format::Dash | Format::Smooth => self.cenc.as_deref().map(Protection::Cenc),
            Format::Hls => self.hls.as_deref().map(Protection::Hls),
            _ => None,
        };
        match (self.playout[n], configured) {
            (Playout::Disabled, _) => Err(DrmError::FormatDisabled {
                format: format.name(),
                why: "its playout is switched off",
            }),
            (Playout::Clear, _) => Ok(Protection::Clear),
            (Playout::Default, Some(p)) => Ok(p),
            (Playout::Default, None) if self.is_configured() => Err(DrmError::FormatDisabled {
                format: format.name(),
                why: "other formats are encrypted and this one has no protection configured \
                      (set its playout to clear to serve it unprotected)",
            }),
            (Playout::Default, None) => Ok(Protection::Clear),
        }
    }
}

impl Cenc {
    /// The key of a track of `kind`.
    pub fn key_for(&self, kind: TrackKind) -> &ContentKey {
        if kind == TrackKind::Video {
            &self.video
        } else {
            &self.audio
        }
    }

    /// The key IDs, each once.
    pub fn kids(&self) -> Vec<[u8; BLOCK]> {
        let mut kids = vec![self.video.kid];
        if self.audio.kid != self.video.kid {
            kids.push(self.audio.kid);
        }
        kids
    }

    /// The cipher of one track, `None` for a kind that stays clear (text, data).
    pub fn track_cipher(
        &self,
        track: &TrackIndex,
        entry: &SampleEntry,
        identity: &str,
    ) -> Result<Option<TrackCipher>, DrmError> {
        TrackCipher::new(
            self.scheme,
            self.key_for(track.kind),
            self.iv.as_deref(),
            track,
            entry,
            identity,
        )
    }

    /// The `pssh` boxes of an init segment: W3C common (ClearKey EME), PlayReady and
    /// Widevine when they are signalled.
    pub fn pssh_boxes(&self, kid: &[u8; BLOCK]) -> Vec<u8> {
        let mut out = Vec::new();
        write_pssh(&mut out, &system::COMMON, &[*kid], &[]);
        if self.playready.is_some() {
            write_pssh(
                &mut out,
                &system::PLAYREADY,
                &[*kid],
                &self.playready_object(kid),
            );
        }
        if let Some(w) = &self.widevine {
            let data = w
                .pssh_data
                .clone()
                .unwrap_or_else(|| self.widevine_data(kid));
            write_pssh(&mut out, &system::WIDEVINE, &[*kid], &data);
        }
        out
    }

    /// The PlayReady Object (PRO) for one key: the configured one, or a header of version
    /// 4.0 (AESCTR, with the key's checksum) or 4.3 (AESCBC).
    pub fn playready_object(&self, kid: &[u8; BLOCK]) -> Vec<u8> {
        if let Some(pro) = self.playready.as_ref().and_then(|p| p.pro.clone()) {
            return pro;
        }
        let la_url = self
            .playready
            .as_ref()
            .and_then(|p| p.license_url.as_deref())
            .map(|u| format!("<LA_URL>{}</LA_URL>", xml_escape(u)))
            .unwrap_or_default();
        // PlayReady writes key IDs as little-endian GUIDs.
        let mut guid = *kid;
        guid[0..4].reverse();
        guid[4..6].reverse();
        guid[6..8].reverse();
        let kid_b64 = crate::base64::encode(&guid);
        let header = match self.scheme {
            Scheme::Cenc => {
                let key = if kid == &self.video.kid { &self.video } else { &self.audio };
                let mut block = guid.into();
                Aes128::new(key.key().into()).encrypt_block(&mut block);
                let checksum = crate::base64::encode(&block[..8]);
                format!(
                    "<WRMHEADER xmlns=\"http://schemas.microsoft.com/DRM/2007/03/PlayReadyHeader\" version=\"4.0.0.0\"><DATA><PROTECTINFO><KEYLEN>16</KEYLEN><ALGID>AESCTR</ALGID></PROTECTINFO><KID>{kid_b64}</KID><CHECKSUM>{checksum}</CHECKSUM>{la_url}</DATA></WRMHEADER>"
                )
            }
            Scheme::Cbcs => format!(
                "<WRMHEADER xmlns=\"http://schemas.microsoft.com/DRM/2007/03/PlayReadyHeader\" version=\"4.3.0.0\"><DATA><PROTECTINFO><KIDS><KID ALGID=\"AESCBC\" VALUE=\"{kid_b64}\"></KID></KIDS></PROTECTINFO>{la_url}</DATA></WRMHEADER>"
            ),
        };
        let utf16: Vec<u8> = header.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let mut pro = Vec::with_capacity(utf16.len() + 10);
        pro.extend_from_slice(&((utf16.len() + 10) as u32).to_le_bytes());
        pro.extend_from_slice(&1u16.to_le_bytes()); // one record
        pro.extend_from_slice(&1u16.to_le_bytes()); // a rights management header
        pro.extend_from_slice(&(utf16.len() as u16).to_le_bytes());
        pro.extend_from_slice(&utf16);
        pro
    }

    /// A `WidevinePsshData` message: the key ID, provider, content ID and, for `cbcs`, the
    /// protection scheme.
    fn widevine_data(&self, kid: &[u8; BLOCK]) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        let field = |out: &mut Vec<u8>, tag: u8, bytes: &[u8]| {
            out.push(tag);
            out.push(bytes.len() as u8);
            out.extend_from_slice(bytes);
        };
        field(&mut out, 0x12, kid);
        field(&mut out, 0x1a, b"ngx-origin");
        field(&mut out, 0x22, kid);
        if self.scheme == Scheme::Cbcs {
            out.push(0x48);
            // varint of the fourcc 'cbcs'
            let mut v = u32::from_be_bytes(*b"cbcs");
            while v >= 0x80 {
                out.push((v as u8) | 0x80);
                v >>= 7;
            }
            out.push(v as u8);
        }
        out
    }

    /// DASH `ContentProtection` elements for an adaptation set of `kind`.
    pub fn dash_content_protection(&self, out: &mut String, kind: TrackKind, indent: &str) {
        let kid = self.key_for(kind).kid;
        let value = match self.scheme {
            Scheme::Cenc => "cenc",
            Scheme::Cbcs => "cbcs",
        };
        let _ = writeln!(
            out,
            "{indent}<ContentProtection schemeIdUri=\"urn:mpeg:dash:mp4protection:2011\" value=\"{value}\" cenc:default_KID=\"{}\"/>",
            crypto::uuid(&kid)
        );
        if self.playready.is_some() {
            let pro = self.playready_object(&kid);
            let mut pssh = Vec::new();
            write_pssh(&mut pssh, &system::PLAYREADY, &[kid], &pro);
            let _ = writeln!(
                out,
                "{indent}<ContentProtection schemeIdUri=\"urn:uuid:{}\" value=\"MSPR 2.0\">\n{indent}  <cenc:pssh>{}</cenc:pssh>\n{indent}  <mspr:pro>{}</mspr:pro>\n{indent}</ContentProtection>",
                crypto::uuid(&system::PLAYREADY),
                crate::base64::encode(&pssh),
                crate::base64::encode(&pro)
            );
        }
        if let Some(w) = &self.widevine {
            let data = w
                .pssh_data
                .clone()
                .unwrap_or_else(|| self.widevine_data(&kid));
            let mut pssh = Vec::new();
            write_pssh(&mut pssh, &system::WIDEVINE, &[kid], &data);
            let _ = writeln!(
                out,
                "{indent}<ContentProtection schemeIdUri=\"urn:uuid:{}\" value=\"Widevine\">\n{indent}  <cenc:pssh>{}</cenc:pssh>\n{indent}</ContentProtection>",
                crypto::uuid(&system::WIDEVINE),
                crate::base64::encode(&pssh)
            );
        }
        // ClearKey: the DASH-IF system ID with the license URL in both forms players read.
        let _ = write!(
            out,
            "{indent}<ContentProtection schemeIdUri=\"urn:uuid:{}\" value=\"ClearKey1.0\"",
            crypto::uuid(&system::CLEARKEY)
        );
        match &self.clearkey_url {
            Some(url) => {
                let url = xml_escape(url);
                let _ = writeln!(
                    out,
                    ">\n{indent}  <dashif:Laurl>{url}</dashif:Laurl>\n{indent}  <clearkey:Laurl Lic_type=\"EME-1.0\">{url}</clearkey:Laurl>\n{indent}</ContentProtection>"
                );
            }
            None => out.push_str("/>\n"),
        }
    }

    /// The namespaces the `ContentProtection` elements use, for the MPD element.
    pub const DASH_NAMESPACES: &'static str = " xmlns:cenc=\"urn:mpeg:cenc:2013\" xmlns:mspr=\"urn:microsoft:playready\" xmlns:dashif=\"https://dashif.org/CPS\" xmlns:clearkey=\"http://dashif.org/guidelines/clearKey\"";

    /// The Smooth `<Protection>` element (PlayReady).
    pub fn smooth_protection(&self) -> String {
        let pro = self.playready_object(&self.video.kid);
        format!(
            "  <Protection>\n    <ProtectionHeader SystemID=\"{}\">{}</ProtectionHeader>\n  </Protection>\n",
            crypto::uuid(&system::PLAYREADY).to_ascii_uppercase(),
            crate::base64::encode(&pro)
        )
    }
}

impl HlsKey {
    /// The `METHOD=…,URI=…` attributes of `EXT-X-KEY` / `EXT-X-SESSION-KEY`.
    pub fn attributes(&self) -> String {
        let uri = self.uri.replace('"', "%22");
        let mut out = match self.method {
            HlsMethod::Aes128 => format!("METHOD=AES-128,URI=\"{uri}\""),
            HlsMethod::SampleAes => format!("METHOD=SAMPLE-AES,URI=\"{uri}\",KEYFORMAT=\"identity\""),
            HlsMethod::FairPlay => format!(
                "METHOD=SAMPLE-AES,URI=\"{uri}\",KEYFORMAT=\"com.apple.streamingkeydelivery\",KEYFORMATVERSIONS=\"1\""
            ),
        };
        if let Some(iv) = &self.iv {
            out.push_str(",IV=0x");
            for b in iv {
                let _ = write!(out, "{b:02X}");
            }
        }
        out
    }

    /// The IV of media segment number `sequence` under AES-128: `key_iv`, or the number.
    pub fn segment_iv(&self, sequence: u64) -> [u8; BLOCK] {
        self.iv.unwrap_or_else(|| {
            let mut iv = [0; BLOCK];
            iv[8..].copy_from_slice(&sequence.to_be_bytes());
            iv
        })
    }

    /// A whole-segment cipher for media segment number `sequence`.
    pub fn segment_cipher(&self, sequence: u64) -> SegmentCipher {
        SegmentCipher::new(&self.key, &self.segment_iv(sequence))
    }

    /// The `cbcs` cipher of one track (SAMPLE-AES in fMP4).
    pub fn track_cipher(
        &self,
        track: &TrackIndex,
        entry: &SampleEntry,
        identity: &str,
    ) -> Result<Option<TrackCipher>, DrmError> {
        let iv = self.iv.map(|iv| iv.to_vec());
        TrackCipher::new(
            Scheme::Cbcs,
            &self.key,
            iv.as_deref(),
            track,
            entry,
            identity,
        )
    }
}

/// How one track's samples are encrypted.
#[derive(Debug, Clone)]
pub struct TrackCipher {
    scheme: Scheme,
    key: ContentKey,
    /// Video: how to find NAL units.
    nal: Option<(NalCodec, usize)>,
    pattern: Pattern,
    /// `cenc`: the IV of sample 0 (each sample adds its number); `cbcs`: the constant IV.
    iv: [u8; BLOCK],
    /// The parameter sets slice headers are read with.
    slices: Option<SliceHeaders>,
}

/// Slice header readers, by codec.
#[derive(Debug, Clone)]
enum SliceHeaders {
    Avc(AvcSliceHeaders),
    Hevc(HevcSliceHeaders),
}

impl SliceHeaders {
    fn observe(&mut self, nal: &[u8]) {
        match self {
            SliceHeaders::Avc(h) => h.observe(nal),
            SliceHeaders::Hevc(h) => h.observe(nal),
        }
    }

    fn header_len(&self, nal: &[u8]) -> Option<usize> {
        match self {
            SliceHeaders::Avc(h) => h.header_len(nal),
            SliceHeaders::Hevc(h) => h.header_len(nal),
        }
    }
}

/// Bytes of a slice NAL unit after its NAL header kept clear when its slice header cannot be
/// read (a slice of an unknown parameter set, syntax the readers do not know): more than any
/// slice header of real streams takes (a few to a few dozen bytes, weighted prediction tables
/// included), as DECE CFF players expect of `cenc`. Slices that are read are protected from
/// the first byte after their header.
pub const SLICE_HEADER_ALLOWANCE: usize = 96;

impl TrackCipher {
    /// `identity` tells the track apart from the others under the same key (its URL ID), so
    /// that no two tracks' IVs meet.
    pub fn new(
        scheme: Scheme,
        key: &ContentKey,
        iv: Option<&[u8]>,
        track: &TrackIndex,
        entry: &SampleEntry,
        identity: &str,
    ) -> Result<Option<TrackCipher>, DrmError> {
        let nal = match (track.kind, &entry.codec) {
            (TrackKind::Video, CodecConfig::Avc(c)) => {
                Some((NalCodec::Avc, usize::from(c.nal_length_size)))
            }
            (TrackKind::Video, CodecConfig::Hevc(c)) => {
                Some((NalCodec::Hevc, usize::from(c.nal_length_size)))
            }
            (TrackKind::Video, _) => {
                return Err(DrmError::Unsupported(format!(
                    "encrypting {} video is not supported (H.264 and HEVC are)",
                    entry.original_format()
                )))
            }
            (TrackKind::Audio, _) => None,
            _ => return Ok(None),
        };
        if entry.protection.is_some() {
            return Err(DrmError::Unsupported(
                "the source track is already encrypted".into(),
            ));
        }
        // The track's IV: the configured one spread over the track's identity with the key
        // as a pseudo-random function, so that tracks sharing the key never share IVs.
        let mut block = [0u8; BLOCK];
        if let Some(iv) = iv {
            block[..iv.len().min(BLOCK)].copy_from_slice(&iv[..iv.len().min(BLOCK)]);
        }
        let h = xxhash_rust::xxh3::xxh3_64(identity.as_bytes());
        let derived = {
            let mut b = block;
            for (x, y) in b[8..].iter_mut().zip(h.to_be_bytes()) {
                *x ^= y;
            }
            let mut b = b.into();
            Aes128::new(key.key().into()).encrypt_block(&mut b);
            let out: [u8; BLOCK] = b.into();
            out
        };
        let iv = match (scheme, iv) {
            // A configured 16-byte IV is used as it is for `cbcs` (players may be told it).
            (Scheme::Cbcs, Some(iv)) if iv.len() == BLOCK => block,
            (Scheme::Cbcs, _) => derived,
            // `cenc`: 8 bytes per sample, the low 8 of the counter block count blocks.
            (Scheme::Cenc, _) => {
                let mut iv = [0; BLOCK];
                iv[..8].copy_from_slice(&derived[..8]);
                iv
            }
        };
        let pattern = if nal.is_some() && scheme == Scheme::Cbcs {
            Pattern::VIDEO
        } else {
            Pattern::WHOLE
        };
        let slices = match &entry.codec {
            CodecConfig::Avc(c) => Some(SliceHeaders::Avc(AvcSliceHeaders::new(&c.sps, &c.pps))),
            CodecConfig::Hevc(c) => Some(SliceHeaders::Hevc(HevcSliceHeaders::new(
                c.arrays
                    .iter()
                    .flat_map(|a| a.nal_units.iter().map(|u| &u[..])),
            ))),
            _ => None,
        };
        Ok(Some(TrackCipher {
            scheme,
            key: key.clone(),
            nal,
            pattern,
            iv,
            slices,
        }))
    }

    /// What `tenc` says.
    pub fn track_encryption(&self) -> TrackEncryption {
        TrackEncryption {
            scheme: self.scheme,
            kid: self.key.kid,
            pattern: self.pattern,
            constant_iv: (self.scheme == Scheme::Cbcs).then_some(self.iv),
        }
    }

    pub fn kid(&self) -> &[u8; BLOCK] {
        &self.key.kid
    }

    /// Identifies the key and scheme in ETags without revealing the key.
    pub fn fingerprint(&self) -> Vec<u8> {
        let mut out = key_check_value(&self.key).to_vec();
        out.extend_from_slice(&self.iv);
        out.push(self.scheme as u8);
        out
    }

    /// The counter block (`cenc`) or the constant IV (`cbcs`) of sample `n` of the track.
    fn sample_iv(&self, n: u32) -> [u8; BLOCK] {
        match self.scheme {
            Scheme::Cbcs => self.iv,
            Scheme::Cenc => {
                let base = u64::from_be_bytes(self.iv[..8].try_into().unwrap_or_default());
                let mut iv = [0; BLOCK];
                iv[..8].copy_from_slice(&base.wrapping_add(u64::from(n)).to_be_bytes());
                iv
            }
        }
    }

    /// The subsamples of one sample (none for audio: the whole sample is protected).
    /// `slices` takes note of parameter sets the sample carries (`avc3`).
    fn subsamples(
        &self,
        sample: &[u8],
        slices: &mut Option<SliceHeaders>,
    ) -> Result<Vec<crypto::Subsample>, CryptoError> {
        let Some((codec, length_size)) = self.nal else {
            return Ok(Vec::new());
        };
        let header = codec.header_len();
        let mut slice_clear = |nal: &[u8], is_slice: bool| -> usize {
            match slices.as_mut() {
                Some(s) if !is_slice => {
                    s.observe(nal);
                    header
                }
                Some(s) => s.header_len(nal).unwrap_or(header + SLICE_HEADER_ALLOWANCE),
                None => header + SLICE_HEADER_ALLOWANCE,
            }
        };
        nal_subsamples(
            sample,
            length_size,
            codec,
            &mut slice_clear,
            self.scheme == Scheme::Cenc,
        )
    }

    /// The protected init segment: the clear one with its sample entry made `encv`/`enca`
    /// (with `sinf`) and `pssh` boxes added to `moov`.
    pub fn protect_init(&self, init: &[u8], pssh: &[u8]) -> Result<Vec<u8>, DrmError> {
        let tenc = self.track_encryption();
        let video = self.nal.is_some();
        let broken = || DrmError::Unsupported("init segment without one sample entry".into());
        let mut out = Vec::with_capacity(init.len() + 256 + pssh.len());
        for (fourcc, bytes) in boxes(init).ok_or_else(broken)? {
            if &fourcc.0 == b"moov" {
                let mut moov = rewrite_path(
                    bytes,
                    &[b"trak", b"mdia", b"minf", b"stbl", b"stsd"],
                    &|stsd| {
                        // stsd: full box header, entry count, then the one entry.
                        let entry = stsd.get(16..)?;
                        let protected = crypto::protect_sample_entry(entry, video, &tenc)?;
                        let mut out = stsd[..16].to_vec();
                        out.extend_from_slice(&protected);
                        Some(out)
                    },
                )
                .ok_or_else(broken)?;
                moov.extend_from_slice(pssh);
                set_size(&mut moov).ok_or_else(broken)?;
                out.extend_from_slice(&moov);
            } else {
                out.extend_from_slice(bytes);
            }
        }
        Ok(out)
    }

    /// The encrypted fragment: `plan`'s header with the sample encryption boxes added to its
    /// `traf`, then `plan`'s samples read from `source` and encrypted into the same buffer.
    /// `piff` writes Smooth's PIFF sample encryption box instead of `senc`/`saiz`/`saio`.
    pub fn encrypt_fragment(
        &self,
        plan: &FragmentPlan,
        track: &TrackIndex,
        source: &dyn Source,
        piff: bool,
    ) -> Result<Vec<u8>, EncryptError> {
        let failed = |error: CryptoError| EncryptError::Drm(error.into());
        let samples = plan.samples.clone();
        let mut slices = self.slices.clone();
        let listed: Vec<crate::index::Sample> = track.samples(samples).collect();
        let mut aux = Vec::with_capacity(listed.len());
        for s in &listed {
            let data = source.bytes(s.offset, s.size as usize)?;
            aux.push(SampleAux {
                iv: match self.scheme {
                    Scheme::Cenc => self.sample_iv(s.index)[..8].to_vec(),
                    Scheme::Cbcs => Vec::new(),
                },
                subsamples: self.subsamples(&data, &mut slices).map_err(failed)?,
            });
        }
        let with_subsamples = self.nal.is_some();
        let described = aux.iter().any(|a| a.size(with_subsamples) > 0);
        let header = if !described {
            // `cbcs` audio: constant IV, no subsamples, nothing to say per sample.
            plan.header.clone()
        } else {
            add_to_traf(&plan.header, |at_from_moof| {
                let mut extra = Vec::new();
                if piff {
                    write_piff(&mut extra, &aux, with_subsamples);
                } else {
                    // senc first: readers that take both it and saiz/saio (ffmpeg) keep
                    // the one they read first.
                    let first = write_senc(&mut extra, &aux, with_subsamples);
                    write_saiz(&mut extra, &aux, with_subsamples);
                    write_saio(&mut extra, (at_from_moof + first) as u32);
                }
                extra
            })
            .ok_or(EncryptError::NoTraf)?
        };
        let mut out = crate::buffers::take(header.len() + plan.payload_len as usize);
        out.extend_from_slice(&header);
        if self.scheme == Scheme::Cbcs {
            // Each subsample is a chain of its own (the constant IV restarts it): the samples
            // are copied in large runs, then every chain of the fragment is encrypted, eight
            // side by side.
            let mut ranges = Vec::new();
            for (s, a) in listed.iter().zip(&aux) {
                let data = source.bytes(s.offset, s.size as usize)?;
                let base = out.len();
                out.extend_from_slice(&data);
                ranges.extend(
                    crypto::sample_protected_ranges(&a.subsamples, data.len(), base)
                        .map_err(failed)?,
                );
            }
            crypto::cbc_pattern_chains(&self.key, &self.iv, self.pattern, &mut out, &ranges)
                .map_err(failed)?;
            return Ok(out);
        }
        for (s, a) in listed.iter().zip(&aux) {
            let data = source.bytes(s.offset, s.size as usize)?;
            encrypt_sample_into(
                self.scheme,
                &self.key,
                &self.sample_iv(s.index),
                self.pattern,
                &data,
                &a.subsamples,
                &mut out,
            )
            .map_err(failed)?;
        }
        Ok(out)
    }
}

/// PIFF's `SampleEncryptionBox` (`uuid` a2394f52-…), as Smooth clients read it.
fn write_piff(out: &mut Vec<u8>, aux: &[SampleAux], with_subsamples: bool) {
    const PIFF_SENC: [u8; 16] = [
        0xa2, 0x39, 0x4f, 0x52, 0x5a, 0x9b, 0x4f, 0x14, 0xa2, 0x44, 0x6c, 0x42, 0x7c, 0x64, 0x8d,
        0xf4,
    ];
    let mut senc = Vec::new();
    write_senc(&mut senc, aux, with_subsamples);
    // senc's body after its 8-byte header is the PIFF box's body after the UUID.
    let body = &senc[8..];
    out.extend_from_slice(&((8 + 16 + body.len()) as u32).to_be_bytes());
    out.extend_from_slice(b"uuid");
    out.extend_from_slice(&PIFF_SENC);
    out.extend_from_slice(body);
}

/// The boxes laid end to end in `data`: each one's type and bytes, read with the box reader of
/// [`crate::mp4`]. `None` when `data` is not whole boxes, or a box has a 64-bit size (the
/// boxes rewritten here are generated, with 32-bit sizes that are rewritten in place).
fn boxes(data: &[u8]) -> Option<Vec<(FourCC, &[u8])>> {
    let mut r = Reader::new(data, 0);
    let mut out = Vec::new();
    while let Some((h, _)) = r.next_box_body().ok()? {
        if h.header_size != 8 {
            return None;
        }
        out.push((h.fourcc, data.get(h.offset as usize..h.end() as usize)?));
    }
    Some(out)
}

/// Writes a box's length into its 32-bit size field.
fn set_size(b: &mut [u8]) -> Option<()> {
    let len = u32::try_from(b.len()).ok()?;
    b.get_mut(0..4)?.copy_from_slice(&len.to_be_bytes());
    Some(())
}

/// `container` (a whole box) with the box at `path` below it replaced by `f` of it, every
/// size on the way fixed.
fn rewrite_path(
    container: &[u8],
    path: &[&[u8; 4]],
    f: &dyn Fn(&[u8]) -> Option<Vec<u8>>,
) -> Option<Vec<u8>> {
    let Some((first, rest)) = path.split_first() else {
        let mut out = f(container)?;
        set_size(&mut out)?;
        return Some(out);
    };
    // Full boxes among the containers (stsd) are handled by `f`; the path's are plain.
    let mut out = container.get(..8)?.to_vec();
    let mut found = false;
    for (fourcc, child) in boxes(container.get(8..)?)? {
        if &fourcc.0 == *first && !found {
            out.extend_from_slice(&rewrite_path(child, rest, f)?);
            found = true;
        } else {
            out.extend_from_slice(child);
        }
    }
    set_size(&mut out)?;
    found.then_some(out)
}

/// A fragment header (`styp`? `moof` `mdat`-header) with `extra` boxes appended to its one
/// `traf`: sizes and the `trun` data offset moved by their length. `extra` is given where
/// it will start, from the `moof`'s first byte.
fn add_to_traf(header: &[u8], extra: impl FnOnce(usize) -> Vec<u8>) -> Option<Vec<u8>> {
    // The boxes before the mdat's header: the mdat's payload is not in `header`.
    let mut r = Reader::new(header, 0);
    let (mut moof, mut moof_body) = r.next_box_body().ok()??;
    // A segment type, a producer reference time and event messages may come first.
    while [b"styp", b"prft", b"emsg"].contains(&&moof.fourcc.0) {
        (moof, moof_body) = r.next_box_body().ok()??;
    }
    if moof.fourcc != FourCC::new(b"moof") || moof.header_size != 8 {
        return None;
    }
    let (traf, mut traf_body) = std::iter::from_fn(|| moof_body.next_box_body().ok()?)
        .find(|(h, _)| h.fourcc == FourCC::new(b"traf"))?;
    if traf.header_size != 8 {
        return None;
    }
    // Every trun with a data offset: it counts from the moof, which grows before the mdat.
    let mut data_offsets = Vec::new();
    while let Some((h, mut body)) = traf_body.next_box_body().ok()? {
        if h.fourcc == FourCC::new(b"trun") && body.full_box().ok()?.1 & 1 != 0 {
            data_offsets.push(h.body_offset() as usize + 8);
        }
    }
    let (moof_at, traf_at, traf_end) = (
        moof.offset as usize,
        traf.offset as usize,
        traf.end() as usize,
    );
    let extra = extra(traf_end - moof_at);
    let grow = u32::try_from(extra.len()).ok()?;
    let mut out = Vec::with_capacity(header.len() + extra.len());
    out.extend_from_slice(header.get(..traf_end)?);
    out.extend_from_slice(&extra);
    out.extend_from_slice(header.get(traf_end..)?);
    let add = |out: &mut Vec<u8>, at: usize| -> Option<()> {
        let field = out.get_mut(at..at + 4)?;
        let v = u32::from_be_bytes(field.try_into().ok()?);
        field.copy_from_slice(&v.checked_add(grow)?.to_be_bytes());
        Some(())
    };
    add(&mut out, moof_at)?;
    add(&mut out, traf_at)?;
    for at in data_offsets {
        add(&mut out, at)?;
    }
    Some(out)
}

/// A key's check value: the first bytes of the key encrypting its ID. Safe to publish (it is
/// what PlayReady headers carry as CHECKSUM), and it changes with the key.
fn key_check_value(key: &ContentKey) -> [u8; 8] {
    let mut block = key.kid.into();
    Aes128::new(key.key().into()).encrypt_block(&mut block);
    let mut out = [0; 8];
    out.copy_from_slice(&block[..8]);
    out
}

/// AES-128-CBC over a whole segment with PKCS#7 padding (HLS `METHOD=AES-128`), fed in
/// pieces: each piece is encrypted in place but for a tail shorter than a block, which
/// starts the next piece. The chain's state is the key and the last ciphertext block, so a
/// copy (a clone) continues where the original is.
pub struct SegmentCipher {
    key: ContentKey,
    /// The block the next piece chains from: the IV, then each piece's last ciphertext block.
    chain: [u8; BLOCK],
    /// OpenSSL's context, made on first use (a clone makes its own).
    cipher: Option<crypto::Cbc>,
    carry: Vec<u8>,
    fingerprint: Vec<u8>,
}

impl Clone for SegmentCipher {
    fn clone(&self) -> SegmentCipher {
        SegmentCipher {
            key: self.key.clone(),
            chain: self.chain,
            cipher: None,
            carry: self.carry.clone(),
            fingerprint: self.fingerprint.clone(),
        }
    }
}

impl std::fmt::Debug for SegmentCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SegmentCipher")
    }
}

impl SegmentCipher {
    pub fn new(key: &ContentKey, iv: &[u8; BLOCK]) -> SegmentCipher {
        let mut fingerprint = key_check_value(key).to_vec();
        fingerprint.extend_from_slice(iv);
        SegmentCipher {
            key: key.clone(),
            chain: *iv,
            cipher: None,
            carry: Vec::with_capacity(BLOCK),
            fingerprint,
        }
    }

    /// Identifies key and IV in ETags without revealing the key.
    pub fn fingerprint(&self) -> Vec<u8> {
        self.fingerprint.clone()
    }

    /// The encrypted length of `clear_len` bytes.
    pub fn padded_len(clear_len: u64) -> u64 {
        (clear_len / BLOCK as u64 + 1) * BLOCK as u64
    }

    /// Starts a piece: puts the previous piece's tail at its front.
    pub fn begin_piece(&mut self, piece: &mut Vec<u8>) {
        piece.extend_from_slice(&self.carry);
        self.carry.clear();
    }

    /// Encrypts a filled piece in place; with `last`, pads and encrypts everything, else keeps
    /// the tail that is not a whole block for the next piece.
    pub fn seal_piece(&mut self, piece: &mut Vec<u8>, last: bool) -> Result<(), CryptoError> {
        if last {
            let pad = BLOCK - piece.len() % BLOCK;
            piece.resize(piece.len() + pad, pad as u8);
        } else {
            let whole = piece.len() - piece.len() % BLOCK;
            self.carry.extend_from_slice(&piece[whole..]);
            piece.truncate(whole);
        }
        let len = piece.len();
        if len == 0 {
            return Ok(());
        }
        if self.cipher.is_none() {
            self.cipher = Some(crypto::Cbc::new(&self.key, &self.chain)?);
        }
        let Some(cipher) = self.cipher.as_mut() else {
            return Err(CryptoError::Cipher("no context".into()));
        };
        // OpenSSL writes in place given a block of room (the piece has it: its capacity is a
        // piece and a packet).
        piece.resize(len + BLOCK, 0);
        let sealed = cipher.encrypt_in_place(piece, len);
        piece.truncate(len);
        sealed?;
        self.chain.copy_from_slice(&piece[len - BLOCK..]);
        Ok(())
    }

    /// A whole buffer (a segment made in memory).
    pub fn encrypt_all(mut self, mut data: Vec<u8>) -> Result<Vec<u8>, CryptoError> {
        self.seal_piece(&mut data, true)?;
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cbc::cipher::{BlockDecryptMut, KeyIvInit};

    fn metas(pairs: &[(&str, &str)]) -> Vec<Meta> {
        pairs
            .iter()
            .map(|(n, c)| Meta {
                name: n.to_string(),
                content: c.to_string(),
            })
            .collect()
    }

    const KID: &str = "000102030405060708090A0B0C0D0E0F";
    const KEY: &str = "101112131415161718191A1B1C1D1E1F";

    #[test]
    fn nothing_configured_is_clear_everywhere() {
        let drm = Drm::from_metas(&[]).unwrap();
        assert!(!drm.is_configured());
        for f in Format::PACKAGED {
            assert!(matches!(drm.for_format(f), Ok(Protection::Clear)));
        }
    }

    #[test]
    fn iss_key_protects_dash_and_smooth_and_refuses_the_rest() {
        let drm = Drm::from_metas(&metas(&[("iss.key", &format!("{KID}:{KEY}"))])).unwrap();
        assert!(matches!(
            drm.for_format(Format::Dash),
            Ok(Protection::Cenc(_))
        ));
        assert!(matches!(
            drm.for_format(Format::Smooth),
            Ok(Protection::Cenc(_))
        ));
        assert!(matches!(
            drm.for_format(Format::Hls),
            Err(DrmError::FormatDisabled { .. })
        ));
        assert!(matches!(
            drm.for_format(Format::Hds),
            Err(DrmError::FormatDisabled { .. })
        ));
        // What no packager writes is not protected, nor refused.
        assert!(matches!(
            drm.for_format(Format::Progressive),
            Ok(Protection::Clear)
        ));
        let drm = Drm::from_metas(&metas(&[
            ("iss.key", &format!("{KID}:{KEY}")),
            ("hls_playout", "clear"),
            ("iss_playout", "false"),
        ]))
        .unwrap();
        assert!(matches!(drm.for_format(Format::Hls), Ok(Protection::Clear)));
        assert!(matches!(
            drm.for_format(Format::Smooth),
            Err(DrmError::FormatDisabled { .. })
        ));
        let c = drm.cenc.as_deref().unwrap();
        assert_eq!(c.scheme, Scheme::Cenc);
        assert!(c.playready.is_some() && c.widevine.is_none());
    }

    #[test]
    fn per_kind_keys_and_schemes() {
        let other = "202122232425262728292A2B2C2D2E2F:303132333435363738393A3B3C3D3E3F";
        let drm = Drm::from_metas(&metas(&[
            ("iss.key", &format!("{KID}:{KEY}")),
            ("iss.audio_key", other),
            ("iss.scheme", "CBCS"),
        ]))
        .unwrap();
        let c = drm.cenc.as_deref().unwrap();
        assert_eq!(c.scheme, Scheme::Cbcs);
        assert_eq!(c.key_for(TrackKind::Video).kid[0], 0x00);
        assert_eq!(c.key_for(TrackKind::Audio).kid[0], 0x20);
        assert_eq!(c.kids().len(), 2);
    }

    #[test]
    fn bad_material_is_named_without_the_value() {
        for (name, value) in [
            ("iss.key", "nothex:zz"),
            ("iss.key", "00:11"),
            ("iss.key", KID),
            (
                "iss.key",
                &format!("{KID}:00000000000000000000000000000000"),
            ),
            ("iss.scheme", "cens"),
            ("iss.key_iv", "123"),
            ("hls.key", &format!(":{KEY}")), // no license_server_url
        ] {
            let good = format!("{KID}:{KEY}");
            let mut m = vec![("iss.key", good.as_str())];
            m.push((name, value));
            let e = Drm::from_metas(&metas(&m)).unwrap_err();
            let text = e.to_string();
            assert!(!text.contains(KEY) && !text.contains("nothex"), "{text}");
        }
        let e = Drm::from_metas(&metas(&[
            ("iss.key", &format!("{KID}:{KEY}")),
            ("widevine.key", &format!("{KID}:{KID}")),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("widevine.key"));
    }

    #[test]
    fn each_key_iv_is_refused_with_its_own_name_and_sizes() {
        let hls = |iv: &str| {
            Drm::from_metas(&metas(&[
                ("hls.key", &format!(":{KEY}")),
                ("hls.license_server_url", "https://k.example/key"),
                ("hls.key_iv", iv),
            ]))
        };
        // 8 bytes: an IV iss.key_iv takes, HLS does not.
        let e = hls("0x0001020304050607").unwrap_err().to_string();
        assert_eq!(
            e,
            "content protection option hls.key_iv: expected 32 hex digits (16 bytes)"
        );
        assert!(hls("0x000102030405060708090a0b0c0d0e0f").is_ok());
        let iss = |iv: &str| {
            Drm::from_metas(&metas(&[
                ("iss.key", &format!("{KID}:{KEY}")),
                ("iss.key_iv", iv),
            ]))
        };
        assert!(iss("0001020304050607").is_ok());
        assert_eq!(
            iss("00010203040506").unwrap_err().to_string(),
            "content protection option iss.key_iv: expected 16 or 32 hex digits (8 or 16 bytes)"
        );
    }

    #[test]
    fn hls_methods_and_attributes() {
        let base = [
            ("hls.key", format!(":{KEY}")),
            (
                "hls.license_server_url",
                "https://k.example/key?a=1".to_string(),
            ),
        ];
        let with = |extra: &[(&str, &str)]| {
            let mut m: Vec<(&str, &str)> = base.iter().map(|(a, b)| (*a, b.as_str())).collect();
            m.extend_from_slice(extra);
            Drm::from_metas(&metas(&m)).unwrap().hls.unwrap()
        };
        let aes = with(&[]);
        assert_eq!(aes.method, HlsMethod::Aes128);
        assert_eq!(
            aes.attributes(),
            "METHOD=AES-128,URI=\"https://k.example/key?a=1\""
        );
        assert_eq!(aes.segment_iv(5)[15], 5);
        let fp = with(&[
            ("hls_playout", "sample_aes_streamingkeydelivery"),
            ("hls.key_iv", "0x000102030405060708090a0b0c0d0e0f"),
        ]);
        assert_eq!(fp.method, HlsMethod::FairPlay);
        assert!(fp
            .attributes()
            .contains("KEYFORMAT=\"com.apple.streamingkeydelivery\""));
        assert!(fp
            .attributes()
            .ends_with(",IV=0x000102030405060708090A0B0C0D0E0F"));
        assert_eq!(fp.segment_iv(5), fp.iv.unwrap());
    }

    #[test]
    fn given_system_data_is_sent_as_given() {
        let drm = Drm::from_metas(&metas(&[
            (
                "iss.key",
                "10f2b3c4-d5e6-f708-192a-3b4c5d6e7f80:OhxefzstT2CBo8XnCStNbw==",
            ),
            ("iss.drm_specific_data", "AAEC"),
            ("widevine.drm_specific_data", "CAES"),
        ]))
        .unwrap();
        let c = drm.cenc.unwrap();
        // The UUID form and base64 name the same bytes as hex does.
        assert_eq!(c.video.kid[..2], [0x10, 0xf2]);
        assert_eq!(c.video.key()[..2], [0x3a, 0x1c]);
        assert_eq!(c.playready_object(&c.video.kid), [0, 1, 2]);
        let pssh = c.pssh_boxes(&c.video.kid);
        let widevine = pssh
            .windows(16)
            .position(|w| w == system::WIDEVINE)
            .unwrap();
        // system ID, KID count, KID, data size, data.
        assert_eq!(&pssh[widevine + 16 + 4 + 16..][..7], [0, 0, 0, 3, 8, 1, 18]);
    }

    #[test]
    fn segment_cipher_in_pieces_equals_in_one() {
        let key = ContentKey::new([1; 16], [2; 16]);
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let whole = SegmentCipher::new(&key, &[3; 16])
            .encrypt_all(data.clone())
            .unwrap();
        assert_eq!(whole.len() as u64, SegmentCipher::padded_len(1000));
        let mut c = SegmentCipher::new(&key, &[3; 16]);
        let mut out = Vec::new();
        let pieces = [&data[..100], &data[100..133], &data[133..]];
        for (n, p) in pieces.iter().enumerate() {
            let mut piece = Vec::new();
            c.begin_piece(&mut piece);
            piece.extend_from_slice(p);
            c.seal_piece(&mut piece, n == pieces.len() - 1).unwrap();
            assert_eq!(piece.len() % 16, 0);
            out.extend_from_slice(&piece);
        }
        assert_eq!(out, whole);
        // And it decrypts back, padding stripped.
        let mut d = cbc::Decryptor::<Aes128>::new((&[2u8; 16]).into(), (&[3u8; 16]).into());
        for block in out.chunks_exact_mut(16) {
            d.decrypt_block_mut(block.into());
        }
        let pad = *out.last().unwrap() as usize;
        assert_eq!(&out[..out.len() - pad], &data[..]);
    }

    #[test]
    fn playready_object_layout() {
        let drm = Drm::from_metas(&metas(&[
            ("iss.key", &format!("{KID}:{KEY}")),
            (
                "iss.license_server_url",
                "https://pr.example/rightsmanager.asmx?a=1&b=2",
            ),
        ]))
        .unwrap();
        let c = drm.cenc.unwrap();
        let pro = c.playready_object(&c.video.kid);
        assert_eq!(
            u32::from_le_bytes(pro[0..4].try_into().unwrap()) as usize,
            pro.len()
        );
        let len = u16::from_le_bytes(pro[8..10].try_into().unwrap()) as usize;
        let units: Vec<u16> = pro[10..10 + len]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let xml = String::from_utf16(&units).unwrap();
        // Little-endian GUID of 00010203-0405-0607-0809-0a0b0c0d0e0f.
        let guid = crate::base64::encode(&[3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15]);
        assert!(xml.contains(&format!("<KID>{guid}</KID>")), "{xml}");
        assert!(xml.contains("<LA_URL>https://pr.example/rightsmanager.asmx?a=1&amp;b=2</LA_URL>"));
        assert!(xml.contains("<CHECKSUM>"));
    }

    #[test]
    fn traf_gets_the_boxes_and_offsets_follow() {
        // styp, moof(mfhd, traf(tfhd, trun with data offset)), mdat header.
        let mut h = Vec::new();
        let bx = |h: &mut Vec<u8>, size: u32, t: &[u8; 4]| {
            h.extend_from_slice(&size.to_be_bytes());
            h.extend_from_slice(t);
        };
        bx(&mut h, 16, b"styp");
        h.extend_from_slice(b"msdh\0\0\0\0");
        let trun = 8 + 4 + 4 + 4;
        let traf = 8 + 16 + trun;
        let moof = 8 + 16 + traf;
        bx(&mut h, moof, b"moof");
        bx(&mut h, 16, b"mfhd");
        h.extend_from_slice(&[0; 8]);
        bx(&mut h, traf, b"traf");
        bx(&mut h, 16, b"tfhd");
        h.extend_from_slice(&[0; 8]);
        bx(&mut h, trun, b"trun");
        h.extend_from_slice(&1u32.to_be_bytes());
        h.extend_from_slice(&0u32.to_be_bytes());
        h.extend_from_slice(&(moof + 8).to_be_bytes());
        bx(&mut h, 8 + 4, b"mdat");
        let out = add_to_traf(&h, |at| {
            assert_eq!(at, (8 + 16 + traf) as usize);
            vec![0, 0, 0, 8, b'f', b'r', b'e', b'e']
        })
        .unwrap();
        assert_eq!(out.len(), h.len() + 8);
        assert_eq!(
            u32::from_be_bytes(out[16..20].try_into().unwrap()),
            moof + 8
        );
        let trun_at = 16 + 8 + 16 + 8 + 16;
        assert_eq!(
            u32::from_be_bytes(out[trun_at + 16..trun_at + 20].try_into().unwrap()),
            moof + 16
        );
        assert_eq!(&out[16 + moof as usize + 8 - 8 + 4..][..4], b"free");
        // Cut anywhere before the mdat header: refused, never a panic.
        for len in 0..16 + moof as usize {
            assert!(add_to_traf(&h[..len], |_| Vec::new()).is_none(), "{len}");
        }
    }
}
