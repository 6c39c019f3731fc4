//! `ismtool package IN.ism -o DIR [--formats …]`: the static tree of a VOD presentation,
//! every manifest, initialization and media segment a player fetches, each the origin's
//! answer byte for byte, under the path the origin serves it at (`DIR/<name>.ism/<virtual
//! path>`). With `usp_prefer_static` the origin sends these files and generates only what is
//! missing.
//!
//! The tree is found as a player finds it: the engine answers each format's manifest URL, the
//! manifest's links are followed (playlists, segment templates, chunk lists, bootstraps), and
//! so on until nothing new is linked. A file stands for its path whatever the query; the one
//! query the tree holds is `hls_fmp4`, on the fMP4 HLS URLs, which are fMP4 by their path
//! (`hls/…`) anyway. The fMP4 master and I-frame playlists share their paths with the MPEG-TS
//! ones, so they are left to the origin (see `origin_core::stored::may_be_stored`).

mod links;
mod origin;
mod tree;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};
use origin_core::request::{Answer, Body};
use origin_core::stored::may_be_stored;
use origin_core::url::{DashTarget, HdsTarget, HlsTarget, ManifestKind, Route, RouteOptions};
use origin_core::url::{SmoothTarget, Target};
use origin_core::Error;

use origin::LocalOrigin;
use tree::Tree;

/// The formats a tree can hold, each entered at its manifest URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum Format {
    /// MPEG-DASH: `.mpd`, `dash/…`.
    Dash,
    /// HLS with MPEG-TS segments: `.m3u8`, `<variant>.m3u8`, `<variant>-<n>.ts`, `keyframes/…`.
    Hls,
    /// HLS with fMP4 segments (`?hls_fmp4`): `hls/<variant>.m3u8`, `hls/<variant>-<n>.m4s`.
    HlsFmp4,
    /// Smooth Streaming: `Manifest`, `QualityLevels(<bitrate>)/Fragments(<track>=<time>)`.
    Smooth,
    /// HDS: `.f4m`, `<variant>Seg1-Frag<n>`.
    Hds,
}

impl Format {
    const ALL: [Format; 5] = [
        Format::Dash,
        Format::Hls,
        Format::HlsFmp4,
        Format::Smooth,
        Format::Hds,
    ];

    /// The manifest URL below the presentation.
    fn entry(self) -> &'static str {
        match self {
            Format::Dash => ".mpd",
            Format::Hls => ".m3u8",
            Format::HlsFmp4 => ".m3u8?hls_fmp4",
            Format::Smooth => "Manifest",
            Format::Hds => ".f4m",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Dash => "dash",
            Format::Hls => "hls",
            Format::HlsFmp4 => "hls-fmp4",
            Format::Smooth => "smooth",
            Format::Hds => "hds",
        }
    }
}

pub struct PackageArgs<'a> {
    pub input: &'a Path,
    pub output: &'a Path,
    /// `None`: every format the presentation can be packaged as.
    pub formats: Option<&'a [Format]>,
}

/// Files and bytes written.
#[derive(Default, Clone, Copy)]
struct Count {
    files: u64,
    bytes: u64,
}

/// What a run did, for the summary.
#[derive(Default)]
struct Report {
    by_format: HashMap<Format, Count>,
    /// URLs whose file would share a path with another's: the origin generates them.
    left: Vec<String>,
    skipped: Vec<(Format, String)>,
}

pub fn run(args: &PackageArgs<'_>) -> Result<(), String> {
    let input = args.input;
    let shown = input.display();
    let meta = std::fs::metadata(input).map_err(|e| format!("{shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown}: not a file"));
    }
    let name = input
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{shown}: the file name is not UTF-8"))?;
    let kind = Route::parse(format!("/{name}").as_bytes(), b"", RouteOptions::default())
        .map_err(|_| format!("{shown}: not a server manifest (.ism) or an MP4 file"))?
        .kind;
    if kind == ManifestKind::Live {
        return Err(format!(
            "{shown}: a live publishing point changes as it is ingested; only VOD \
             presentations (.ism, .mp4) are packaged to files"
        ));
    }
    let manifest_file = std::path::absolute(input).map_err(|e| format!("{shown}: {e}"))?;
    let mut origin = LocalOrigin::new(&manifest_file);
    let mut tree = Tree::create(args.output, name)?;

    let formats = args.formats.unwrap_or(&Format::ALL);
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let crawl = Crawl {
        top: &format!("/{}", encode_segment(name)),
        inside: &format!("/{name}/"),
        formats,
        skip_unsupported: args.formats.is_none(),
        bar: &bar,
    };
    let result = crawl.run(&mut origin, &mut tree);
    bar.finish_and_clear();
    let report = result?;
    if report.by_format.is_empty() {
        let why: Vec<String> = report
            .skipped
            .iter()
            .map(|(f, e)| format!("{}: {e}", f.name()))
            .collect();
        return Err(format!("{shown}: nothing to package ({})", why.join("; ")));
    }
    print_summary(&report, formats, &args.output.join(name));
    Ok(())
}

/// One walk through a presentation's links.
struct Crawl<'a> {
    /// `/<server manifest file name>`, as URL text.
    top: &'a str,
    /// `/<server manifest file name>/`: every path of the tree (decoded) starts with it.
    inside: &'a str,
    formats: &'a [Format],
    /// Leave out a format whose manifest the presentation cannot make (no format was asked
    /// for by name).
    skip_unsupported: bool,
    bar: &'a ProgressBar,
}

impl Crawl<'_> {
    fn run(&self, origin: &mut LocalOrigin, tree: &mut Tree) -> Result<Report, String> {
        let mut queue: VecDeque<(String, Format)> = VecDeque::new();
        let mut seen: HashSet<String> = HashSet::new();
        for &f in self.formats {
            let url = format!("{}/{}", self.top, f.entry());
            if seen.insert(url.clone()) {
                queue.push_back((url, f));
            }
        }
        let entries = seen.clone();
        self.bar.set_length(queue.len() as u64);
        let mut report = Report::default();
        let mut claimed: HashSet<PathBuf> = HashSet::new();
        while let Some((url, format)) = queue.pop_front() {
            self.bar.set_message(url.clone());
            self.bar.inc(1);
            let (path, route, query) = route_of(&url)?;
            if !path.starts_with(self.inside) {
                return Err(format!("{url}: outside the presentation"));
            }
            let answer = match origin.answer(route.clone(), query) {
                Ok(answer) => answer,
                // A format the presentation cannot be packaged as (HDS without H.264 or
                // AAC): left out, and said so.
                Err(Error::Package(e)) if self.skip_unsupported && entries.contains(&url) => {
                    report.skipped.push((format, e.to_string()));
                    continue;
                }
                Err(e) => return Err(format!("{url}: {e}")),
            };
            for link in links_of(&url, &route, &answer)? {
                if seen.insert(link.clone()) {
                    queue.push_back((link, format));
                    self.bar.inc_length(1);
                }
            }
            let file = tree.file_for(&path)?;
            // A file stands for its path whatever the query: the first URL of a path has it.
            if !may_be_stored(&route) || !claimed.insert(file.clone()) {
                report.left.push(url);
                continue;
            }
            let bytes = tree.write(&file, &answer.body)?;
            let count = report.by_format.entry(format).or_default();
            count.files += 1;
            count.bytes += bytes;
        }
        Ok(report)
    }
}

/// A file name as a URL path segment: percent-encoded but for the characters RFC 3986 allows
/// in a segment.
fn encode_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The decoded path (as nginx hands it on), the route and the raw query of a URL.
fn route_of(url: &str) -> Result<(String, Route, &str), String> {
    let (raw_path, query) = url.split_once('?').unwrap_or((url, ""));
    let decoded = crate::route::percent_decode(raw_path)
        .ok_or_else(|| format!("{url}: malformed percent-encoding"))?;
    let path = String::from_utf8(decoded).map_err(|_| format!("{url}: the path is not UTF-8"))?;
    let route = Route::parse(path.as_bytes(), query.as_bytes(), RouteOptions::default())
        .map_err(|e| format!("{url}: {e}"))?;
    Ok((path, route, query))
}

/// The URLs a manifest answer links to, resolved against its own URL.
fn links_of(url: &str, route: &Route, answer: &Answer) -> Result<Vec<String>, String> {
    let Body::Text(generated) = &answer.body else {
        return Ok(Vec::new());
    };
    let text = &generated.text;
    let references = match &route.target {
        Target::Dash(DashTarget::Manifest) => links::dash(text),
        Target::Hls(HlsTarget::Master | HlsTarget::Playlist { .. }) => Ok(links::hls(text)),
        Target::Smooth(SmoothTarget::Manifest) => links::smooth(text),
        Target::Hds(HdsTarget::Manifest) => links::hds(text),
        _ => Ok(Vec::new()),
    }
    .map_err(|e| format!("{url}: {e}"))?;
    references
        .iter()
        .map(|r| links::resolve(url, r).map_err(|e| format!("{url}: {e}")))
        .collect()
}

fn print_summary(report: &Report, formats: &[Format], top: &Path) {
    let total = report
        .by_format
        .values()
        .fold(Count::default(), |a, c| Count {
            files: a.files + c.files,
            bytes: a.bytes + c.bytes,
        });
    println!(
        "wrote {} files, {} to {}",
        total.files,
        human_bytes(total.bytes),
        top.display()
    );
    for f in formats {
        if let Some(c) = report.by_format.get(f) {
            println!(
                "  {:<9} {:>7} files {:>12}",
                f.name(),
                c.files,
                human_bytes(c.bytes)
            );
        }
    }
    for (f, why) in &report.skipped {
        println!("  {:<9} skipped: {why}", f.name());
    }
    if !report.left.is_empty() {
        println!(
            "left to the origin, which makes them ({}; another URL's file has their path):",
            report.left.len()
        );
        for url in &report.left {
            println!("  {url}");
        }
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut value = n as f64;
    let mut unit = "bytes";
    for u in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = u;
    }
    format!("{value:.1} {unit}")
}
