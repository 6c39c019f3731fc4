//! Content protection on arbitrary input: option text as a server manifest or `origin_drm`
//! gives it (parsed, then every signalling writer run), and arbitrary video samples (split into
//! subsamples by NAL unit with slice headers read against arbitrary parameter sets, then
//! encrypted). Subsamples must cover the sample exactly; nothing may panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use origin_core::crypto::{encrypt_sample, nal_subsamples, ContentKey, NalCodec, Pattern, Scheme};
use origin_core::drm::Drm;
use origin_core::index::TrackKind;
use origin_core::ism::Meta;
use origin_core::mp4::codec::{AvcSliceHeaders, HevcSliceHeaders};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let text = String::from_utf8_lossy(rest);
        let metas: Vec<Meta> = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(n, c)| Meta {
                name: n.to_string(),
                content: c.to_string(),
            })
            .collect();
        if let Ok(drm) = Drm::from_metas(&metas) {
            if let Some(c) = &drm.cenc {
                for kind in [TrackKind::Video, TrackKind::Audio] {
                    let mut out = String::new();
                    c.dash_content_protection(&mut out, kind, "");
                    let _ = c.pssh_boxes(&c.key_for(kind).kid);
                }
                let _ = c.smooth_protection();
            }
            if let Some(h) = &drm.hls {
                let _ = h.attributes();
            }
        }
        return;
    }
    // [sps len][sps][pps len][pps][sample with 4-byte NAL lengths]
    let take = |d: &[u8]| -> Option<(Vec<u8>, usize)> {
        let n = usize::from(*d.first()?);
        Some((d.get(1..1 + n)?.to_vec(), 1 + n))
    };
    let Some((sps, a)) = take(rest) else { return };
    let Some((pps, b)) = take(&rest[a..]) else {
        return;
    };
    let sample = &rest[a + b..];
    let codec = if mode & 2 == 0 {
        NalCodec::Avc
    } else {
        NalCodec::Hevc
    };
    let mut avc = AvcSliceHeaders::new(&[sps.clone()], &[pps.clone()]);
    let mut hevc = HevcSliceHeaders::new([&sps[..], &pps[..]]);
    let mut clear = |nal: &[u8], is_slice: bool| {
        if !is_slice {
            avc.observe(nal);
            hevc.observe(nal);
            return 1;
        }
        let n = match codec {
            NalCodec::Avc => avc.header_len(nal),
            NalCodec::Hevc => hevc.header_len(nal),
        }
        .unwrap_or(97);
        assert!(n <= nal.len().max(97));
        n
    };
    let Ok(subs) = nal_subsamples(sample, 4, codec, &mut clear, mode & 4 != 0) else {
        return;
    };
    let covered: u64 = subs
        .iter()
        .map(|s| u64::from(s.clear) + u64::from(s.protected))
        .sum();
    assert_eq!(covered, sample.len() as u64);
    let key = ContentKey::new([1; 16], [2; 16]);
    let mut copy = sample.to_vec();
    let scheme = if mode & 8 == 0 {
        Scheme::Cenc
    } else {
        Scheme::Cbcs
    };
    encrypt_sample(scheme, &key, &[3; 16], Pattern::VIDEO, &mut copy, &subs).unwrap();
});
