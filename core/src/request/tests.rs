//! The engine driven with byte slices: a local driver (every file supplied whole with its
//! identity) and a remote-like driver (files supplied as sparse sources filled range by range,
//! counting the reads a storage backend would see).

use std::collections::HashMap;
use std::sync::Arc;

use super::reads::{HEADER_READ_AHEAD, MFRA_TAIL};
use super::*;
use crate::ism::{TrackEntry, TrackKind};
use crate::source::{MemorySource, SparseSource};
use crate::url::RouteOptions;

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Files by path, as a driver sees them.
#[derive(Default)]
struct Disk(HashMap<String, Vec<u8>>);

impl Disk {
    fn with(mut self, path: &str, bytes: Vec<u8>) -> Disk {
        self.0.insert(path.to_string(), bytes);
        self
    }

    fn identity(&self, path: &str) -> SourceIdentity {
        SourceIdentity::Memory {
            name: path.to_string(),
            size: self.0[path].len() as u64,
        }
    }
}

/// What a drive saw: the answer (or error) and the storage requests made.
struct Drive {
    result: Result<Answer, Error>,
    opens: usize,
    reads: usize,
    /// Steps that asked for reads: round trips, when a driver reads side by side.
    rounds: usize,
    read_bytes: u64,
}

/// Drives `url` with a local driver: each file supplied whole along with its identity.
fn local(disk: &Disk, url: &str, caches: &mut Caches) -> Drive {
    drive(disk, url, caches, false)
}

/// Drives `url` as a remote driver would: opening an object reads its first [`READ_AHEAD`]
/// bytes (one request, which also gives its size and version); every further need is one
/// ranged read.
fn remote(disk: &Disk, url: &str, caches: &mut Caches) -> Drive {
    drive(disk, url, caches, true)
}

fn drive(disk: &Disk, url: &str, caches: &mut Caches, sparse: bool) -> Drive {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let route = Route::parse(path.as_bytes(), query.as_bytes(), RouteOptions::default())
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let manifest = route.manifest_path.clone();
    let mut req = Request::new(route, manifest, query);
    let mut sparse_sources: HashMap<String, Arc<SparseSource>> = HashMap::new();
    let (mut opens, mut reads, mut read_bytes, mut rounds) = (0, 0, 0, 0);
    let result = loop {
        match req.step(caches) {
            Err(e) => break Err(e),
            Ok(Step::Done(answer)) => break Ok(answer),
            Ok(Step::Need(Need::Wait(wait))) => panic!("a VOD request was held: {wait:?}"),
            Ok(Step::Need(Need::Open(paths))) => {
                for path in paths {
                    opens += 1;
                    let Some(bytes) = disk.0.get(&path) else {
                        req.supply_open(&path, Err(Error::NotFound { path: path.clone() }));
                        continue;
                    };
                    let identity = disk.identity(&path);
                    let reader: SharedSource = if sparse {
                        let s = Arc::new(SparseSource::new(
                            &path,
                            identity.clone(),
                            bytes.len() as u64,
                        ));
                        let head = &bytes[..bytes.len().min(READ_AHEAD as usize)];
                        read_bytes += head.len() as u64;
                        s.insert(0, head);
                        sparse_sources.insert(path.clone(), s.clone());
                        s
                    } else {
                        Arc::new(MemorySource::new(&path, bytes.clone()))
                    };
                    let opened = Opened {
                        identity,
                        size: bytes.len() as u64,
                        modified: 1_700_000_000,
                        reader: Some(reader),
                    };
                    req.supply_open(&path, Ok(opened));
                }
            }
            Ok(Step::Need(Need::Read(wanted))) => {
                assert!(sparse, "a local file was asked for bytes: {wanted:?}");
                rounds += 1;
                for read in wanted {
                    reads += 1;
                    let bytes = &disk.0[&read.path];
                    let end = (read.offset + read.len) as usize;
                    let s = &sparse_sources[&read.path];
                    s.insert(read.offset, &bytes[read.offset as usize..end]);
                    read_bytes += read.len;
                    req.supply_read(&read.path, Ok(s.clone() as SharedSource));
                }
            }
        }
    };
    Drive {
        result,
        opens,
        reads,
        rounds,
        read_bytes,
    }
}

fn text(d: &Drive) -> &str {
    match &d.result {
        Ok(Answer {
            body: Body::Text(g),
            ..
        }) => &g.text,
        Ok(_) => panic!("not a text answer"),
        Err(e) => panic!("{e}"),
    }
}

/// A server manifest listing the ladder's 360p video and English audio (progressive MP4s).
fn ladder_ism(metas: &[(&str, &str)]) -> Vec<u8> {
    let mut m = ServerManifest::default();
    for (name, content) in metas {
        m.set_meta(name, content);
    }
    let mut v = TrackEntry::new(TrackKind::Video, "media/ladder-video-360.mp4");
    v.system_bitrate = Some(165_000);
    m.tracks.push(v);
    let mut a = TrackEntry::new(TrackKind::Audio, "media/ladder-audio-eng.mp4");
    a.system_bitrate = Some(128_000);
    a.system_language = Some("eng".into());
    m.tracks.push(a);
    m.to_xml().into_bytes()
}

fn ladder_disk(metas: &[(&str, &str)]) -> Disk {
    Disk::default()
        .with("/vod/v.ism", ladder_ism(metas))
        .with(
            "/vod/media/ladder-video-360.mp4",
            fixture("ladder-video-360.mp4"),
        )
        .with(
            "/vod/media/ladder-audio-eng.mp4",
            fixture("ladder-audio-eng.mp4"),
        )
}

#[test]
fn local_files_answer_every_target_without_a_read() {
    let disk = ladder_disk(&[]);
    let mut caches = Caches::default();
    let mpd = local(&disk, "/vod/v.ism/.mpd", &mut caches);
    assert!(text(&mpd).contains("<MPD"), "{}", text(&mpd));
    // The manifest, then both sources at once.
    assert_eq!(mpd.opens, 3);
    assert_eq!(mpd.reads, 0);

    let m3u8 = local(&disk, "/vod/v.ism/.m3u8", &mut caches);
    assert!(text(&m3u8).starts_with("#EXTM3U"));

    let init = local(&disk, "/vod/v.ism/dash/v-video=165000.dash", &mut caches);
    assert!(matches!(
        init.result,
        Ok(Answer {
            body: Body::Bytes(_),
            content_type: "video/mp4",
            ..
        })
    ));
    let seg = local(&disk, "/vod/v.ism/dash/v-video=165000-0.dash", &mut caches);
    match seg.result {
        Ok(Answer {
            body: Body::Fragment { path, plan, source },
            ..
        }) => {
            // Sent from the very file the presentation joined to the manifest's directory.
            assert_eq!(path, "/vod/media/ladder-video-360.mp4");
            assert_eq!(source.name(), path);
            assert!(plan.payload_len > 0);
        }
        Ok(_) => panic!("not a fragment"),
        Err(e) => panic!("{e}"),
    }
    let ts = local(&disk, "/vod/v.ism/v-video=165000-1.ts", &mut caches);
    match ts.result {
        Ok(Answer {
            body: Body::Repackaged {
                tracks, sources, ..
            },
            content_type,
            ..
        }) => {
            assert_eq!(content_type, "video/MP2T");
            assert_eq!(tracks.len(), 1);
            assert_eq!(sources.len(), 1);
        }
        Ok(_) => panic!("not a repackaged segment"),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn a_missing_file_is_not_found_and_a_missing_source_names_itself() {
    let mut caches = Caches::default();
    let none = local(&Disk::default(), "/vod/v.ism/.mpd", &mut caches);
    assert!(matches!(none.result, Err(Error::NotFound { ref path }) if path == "/vod/v.ism"));

    let disk = Disk::default().with("/vod/v.ism", ladder_ism(&[]));
    let partial = local(&disk, "/vod/v.ism/.mpd", &mut caches);
    match partial.result {
        Err(Error::NotFound { path }) => assert!(path.starts_with("/vod/media/ladder-")),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("answered without its sources"),
    }
}

#[test]
fn repeated_manifests_come_from_the_cache_and_etags_follow_the_files() {
    let disk = ladder_disk(&[]);
    let mut caches = Caches::default();
    let first = local(&disk, "/vod/v.ism/.mpd", &mut caches);
    let second = local(&disk, "/vod/v.ism/.mpd", &mut caches);
    let (Ok(a), Ok(b)) = (&first.result, &second.result) else {
        panic!("no answers");
    };
    let (Body::Text(ta), Body::Text(tb)) = (&a.body, &b.body) else {
        panic!("not text");
    };
    assert!(Arc::ptr_eq(ta, tb), "the second MPD was written again");
    assert_eq!(a.etag, b.etag);
    assert_eq!(a.modified, 1_700_000_000);

    // A changed source (another identity) gives another ETag for the same text.
    let mut changed = ladder_disk(&[]);
    let mut audio = fixture("ladder-audio-eng.mp4");
    audio.extend_from_slice(&[0, 0, 0, 8, b'f', b'r', b'e', b'e']);
    changed
        .0
        .insert("/vod/media/ladder-audio-eng.mp4".into(), audio);
    let third = local(&changed, "/vod/v.ism/.mpd", &mut caches);
    let c = third.result.as_ref().map_err(|e| e.to_string()).unwrap();
    assert_eq!(text(&third), text(&first));
    assert_ne!(c.etag, a.etag);
}

#[test]
fn minimum_fragment_length_sets_each_formats_segment_length() {
    let count = |m3u8: &str| m3u8.lines().filter(|l| l.starts_with("#EXTINF")).count();
    let mut caches = Caches::default();
    let default = local(
        &ladder_disk(&[]),
        "/vod/v.ism/v-video=165000.m3u8",
        &mut caches,
    );
    let default_segments = count(text(&default));
    assert!(default_segments >= 2, "{}", text(&default));

    let mut caches = Caches::default();
    let four = ladder_disk(&[("hls_minimum_fragment_length", "4")]);
    let longer = local(&four, "/vod/v.ism/v-video=165000.m3u8", &mut caches);
    assert!(
        count(text(&longer)) < default_segments,
        "4-second segments: {}",
        text(&longer)
    );
    // HLS only: DASH keeps its 2-second default.
    let mpd = local(&four, "/vod/v.ism/.mpd", &mut caches);
    let mpd_default = local(&ladder_disk(&[]), "/vod/v.ism/.mpd", &mut Caches::default());
    assert_eq!(
        text(&mpd).matches("<S ").count(),
        text(&mpd_default).matches("<S ").count()
    );

    // A fraction, as mp4split writes frame-exact lengths.
    let fraction = ladder_disk(&[("mpd_minimum_fragment_length", "96/25")]);
    let mpd = local(
        &fraction,
        "/vod/v.ism/.mpd?mpd_segment_template=number",
        &mut Caches::default(),
    );
    assert!(
        text(&mpd).contains("maxSegmentDuration=\"PT7.68S\""),
        "{}",
        text(&mpd)
    );
}

#[test]
fn a_bad_meta_is_refused_as_the_same_option_in_the_query_is() {
    let disk = ladder_disk(&[("mpd_segment_template", "timeline")]);
    let bad = local(&disk, "/vod/v.ism/.mpd", &mut Caches::default());
    let Err(e) = bad.result else {
        panic!("a bad mpd_segment_template was accepted");
    };
    let message = e.to_string();
    assert!(matches!(e, Error::Manifest { .. }), "{message}");
    assert!(
        message.contains("mpd_segment_template") && message.contains("timeline"),
        "{message}"
    );
    assert!(
        message.contains(crate::url::MPD_SEGMENT_TEMPLATE_VALUES),
        "{message}"
    );

    let bad_length = ladder_disk(&[("hls_minimum_fragment_length", "4/0")]);
    let bad = local(&bad_length, "/vod/v.ism/.m3u8", &mut Caches::default());
    assert!(matches!(bad.result, Err(Error::Manifest { .. })));
}

/// `fixture` with `pad` zero bytes added at the end of every `mdat` (sample offsets stay put):
/// a file large enough that its head and its moov are far apart.
fn padded(name: &str, pad: usize) -> Vec<u8> {
    let data = fixture(name);
    let mut out = Vec::with_capacity(data.len() + pad);
    let mut at = 0;
    while at < data.len() {
        let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        let fourcc = &data[at + 4..at + 8];
        if fourcc == b"mdat" {
            out.extend_from_slice(&((size + pad) as u32).to_be_bytes());
            out.extend_from_slice(&data[at + 4..at + size]);
            out.resize(out.len() + pad, 0);
        } else {
            out.extend_from_slice(&data[at..at + size]);
        }
        at += size;
    }
    out
}

#[test]
fn remote_indexes_take_one_request_for_faststart_and_two_for_a_moov_at_the_end() {
    let faststart = Disk::default().with("/s/f.mp4", padded("progressive.mp4", 8 << 20));
    let first = remote(&faststart, "/s/f.mp4/.mpd", &mut Caches::default());
    assert!(text(&first).contains("<MPD"));
    assert_eq!((first.opens, first.reads), (1, 0));

    let tail = Disk::default().with("/s/t.mp4", padded("progressive-tail.mp4", 8 << 20));
    let mut caches = Caches::default();
    let first = remote(&tail, "/s/t.mp4/.mpd", &mut caches);
    assert!(text(&first).contains("<MPD"));
    assert_eq!((first.opens, first.reads), (1, 1));
    // Only metadata was read, never the 8 MiB of media between.
    assert!(
        first.read_bytes < 2 * READ_AHEAD,
        "{} bytes",
        first.read_bytes
    );

    // Warm: a manifest costs its open (the driver's revalidation) and nothing else; a segment
    // one ranged read of its samples.
    let again = remote(&tail, "/s/t.mp4/.m3u8", &mut caches);
    assert!(text(&again).starts_with("#EXTM3U"));
    assert_eq!(again.reads, 0);
}

#[test]
fn a_remote_segment_reads_its_samples_in_one_span() {
    let disk = Disk::default().with("/s/t.mp4", padded("progressive-tail.mp4", 8 << 20));
    let mut caches = Caches::default();
    let mpd = remote(&disk, "/s/t.mp4/.mpd", &mut caches);
    let ids: Vec<String> = text(&mpd)
        .split("<Representation id=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2, "{}", text(&mpd));
    for url in [
        format!("/s/t.mp4/dash/t-{}-0.dash", ids[0]),
        format!("/s/t.mp4/t-{}-2.ts", ids[0]),
    ] {
        let d = remote(&disk, &url, &mut caches);
        if let Err(e) = &d.result {
            panic!("{url}: {e}");
        }
        assert!(d.reads <= 2, "{url}: {} reads", d.reads);
    }
}

/// [`padded`] for a fragmented file, its `mfra` updated to the moofs' new offsets.
fn padded_fragmented(name: &str, pad: usize) -> Vec<u8> {
    let original = fixture(name);
    let mut data = padded(name, pad);
    // Old offset → new offset of every top-level box.
    let mut moved = Vec::new();
    let (mut old, mut new) = (0usize, 0usize);
    while old < original.len() {
        let size = u32::from_be_bytes(original[old..old + 4].try_into().unwrap()) as usize;
        moved.push((old as u64, new as u64));
        new += size
            + if &original[old + 4..old + 8] == b"mdat" {
                pad
            } else {
                0
            };
        old += size;
    }
    let mfra = data.len() - u32::from_be_bytes(data[data.len() - 4..].try_into().unwrap()) as usize;
    let mut at = mfra + 8;
    while at + 8 <= data.len() - 16 {
        let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        if &data[at + 4..at + 8] == b"tfra" {
            let version = data[at + 8];
            let sizes = u32::from_be_bytes(data[at + 16..at + 20].try_into().unwrap());
            let extra = ((sizes >> 4 & 3) + (sizes >> 2 & 3) + (sizes & 3) + 3) as usize;
            let count = u32::from_be_bytes(data[at + 20..at + 24].try_into().unwrap()) as usize;
            let field = if version == 1 { 8 } else { 4 };
            let mut e = at + 24;
            for _ in 0..count {
                let o = e + field;
                let offset = if version == 1 {
                    u64::from_be_bytes(data[o..o + 8].try_into().unwrap())
                } else {
                    u64::from(u32::from_be_bytes(data[o..o + 4].try_into().unwrap()))
                };
                let to = moved.iter().find(|(from, _)| *from == offset).unwrap().1;
                if version == 1 {
                    data[o..o + 8].copy_from_slice(&to.to_be_bytes());
                } else {
                    data[o..o + 4].copy_from_slice(&(to as u32).to_be_bytes());
                }
                e += 2 * field + extra;
            }
        }
        at += size;
    }
    data
}

#[test]
fn a_remote_fragmented_file_is_indexed_from_its_fragment_headers_only() {
    // Fragments each followed by a megabyte of media the index never needs.
    let data = padded_fragmented("smooth.ismv", 1 << 20);
    let fragments = data.windows(4).filter(|w| w == b"moof").count();
    assert!(fragments >= 4);
    let disk = Disk::default().with("/s/f.mp4", data.clone());
    let d = remote(&disk, "/s/f.mp4/.mpd", &mut Caches::default());
    assert!(text(&d).contains("<MPD"));
    // The head; the end of the file with its mfra; then every moof the mfra lists, side by
    // side in one round.
    assert!(d.rounds <= 2, "{} rounds of reads", d.rounds);
    assert!(
        d.reads <= fragments + 1,
        "{} reads for {fragments} fragments",
        d.reads
    );
    assert!(
        d.read_bytes <= READ_AHEAD + MFRA_TAIL + fragments as u64 * HEADER_READ_AHEAD,
        "{} bytes of a {}-byte file",
        d.read_bytes,
        data.len()
    );
}

#[test]
fn caches_count_hits_misses_and_index_builds() {
    use crate::metrics::CacheKind;
    let disk = ladder_disk(&[]);
    let mut caches = Caches::default();
    assert!(caches.stats().iter().all(|s| *s == Default::default()));
    let stat = |caches: &Caches, kind: CacheKind| caches.stats()[kind as usize];

    assert!(local(&disk, "/vod/v.ism/.mpd", &mut caches).result.is_ok());
    let generated = stat(&caches, CacheKind::GeneratedManifests);
    assert_eq!(
        (generated.hits, generated.misses, generated.entries),
        (0, 1, 1)
    );
    assert!(generated.bytes > 0);
    let indexes = stat(&caches, CacheKind::MediaIndexes);
    assert_eq!((indexes.entries, indexes.evictions), (2, 0));
    let builds = caches.index_builds();
    // Both sources indexed, once each; the time is measured, however short.
    assert_eq!(builds.count, 2);
    assert!(builds.nanos > 0);
    assert_eq!(stat(&caches, CacheKind::ServerManifests).entries, 1);

    // The same manifest again comes from the cache and builds nothing.
    assert!(local(&disk, "/vod/v.ism/.mpd", &mut caches).result.is_ok());
    let again = stat(&caches, CacheKind::GeneratedManifests);
    assert_eq!((again.hits, again.misses, again.entries), (1, 1, 1));
    assert_eq!(caches.index_builds().count, 2);

    // A manifest of another format misses, and is made from the cached indexes.
    assert!(local(&disk, "/vod/v.ism/.m3u8", &mut caches).result.is_ok());
    assert_eq!(stat(&caches, CacheKind::GeneratedManifests).misses, 2);
    assert_eq!(caches.index_builds().count, 2);
    assert!(stat(&caches, CacheKind::MediaIndexes).hits >= 2);
}
