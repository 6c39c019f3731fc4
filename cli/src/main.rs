//! ismtool: the operator's companion to ngx-origin.
//!
//! - `ismtool create -o out.ism in1.ismv in2.isma [--<fmt>.<opt>=v …]` writes a server manifest
//!   the way mp4split does (live: `-o ch.isml [--archiving=1 …]` with no inputs);
//! - `ismtool inspect FILE [--json]` shows boxes, tracks, codecs, durations and counts;
//! - `ismtool route URL` shows how the origin reads a request URL;
//! - `ismtool package IN.ism -o DIR [--formats …]` writes the static tree of a presentation;
//! - `ismtool text IN.vtt|IN.ttml [-o OUT.cmft]` packages subtitles as a CMAF text track;
//! - `ismtool cues CUES.json|CUES.txt [-o OUT.mp4]` makes a cue list a timed-metadata track.

mod create;
mod cues;
mod inspect;
mod media;
mod package;
mod route;
mod text;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ismtool",
    version,
    about = "ngx-origin server-manifest and media tool"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a server manifest (.ism for VOD, .isml for a live publishing point).
    ///
    /// ismtool create -o video.ism video.ismv audio.isma --hls.client_manifest_version=4
    /// ismtool create -o channel.isml --archiving=1 --archive_length=3600 --dvr_window_length=30
    #[command(disable_help_flag = true)]
    Create {
        /// -o OUTPUT, input files and --<fmt>.<option>=<value> options, in any order.
        #[arg(allow_hyphen_values = true, trailing_var_arg = true, num_args = 0..)]
        args: Vec<String>,
    },
    /// Show the box tree, tracks, codecs, durations and sample counts of an MP4 / fMP4 file.
    Inspect {
        file: std::path::PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Leave out the box tree.
        #[arg(long)]
        no_boxes: bool,
    },
    /// Show how the origin routes a request URL (path and optional ?query).
    Route {
        /// The request path as a client sends it, e.g. /vod/video.ism/QualityLevels(800000)/Fragments(video=0)
        url: String,
        /// Refuse the legacy Manifest(format=…) forms, as with `usp_skip_rewrite`.
        #[arg(long)]
        skip_rewrite: bool,
    },
    /// Write every manifest and segment of a VOD presentation as files, under the paths the
    /// origin serves them at (DIR/<name>.ism/…), for usp_prefer_static.
    ///
    /// ismtool package /srv/media/vod/movie.ism -o /srv/static/vod --formats dash,hls
    Package {
        /// The server manifest (.ism) or MP4 file.
        input: std::path::PathBuf,
        /// The directory that mirrors the server manifest's: the tree goes to DIR/<name>.ism/.
        #[arg(short, long, value_name = "DIR")]
        output: std::path::PathBuf,
        /// The formats to write, comma-separated (default: every format the presentation has).
        #[arg(long, value_enum, value_delimiter = ',')]
        formats: Option<Vec<package::Format>>,
    },
    /// Package a WebVTT or TTML subtitle file as a fragmented CMAF text track (.cmft).
    ///
    /// ismtool text subtitles.vtt --language eng -o subtitles-eng.cmft
    Text {
        /// The subtitle file (WebVTT, or TTML / IMSC).
        input: std::path::PathBuf,
        /// Output file (default: the input with the extension .cmft).
        #[arg(short, long)]
        output: Option<std::path::PathBuf>,
        /// Sample format: wvtt (WebVTT in MP4) or stpp (TTML); default: the input's.
        #[arg(long)]
        format: Option<String>,
        /// The track's language (ISO 639-2, e.g. eng).
        #[arg(long, default_value = "und")]
        language: String,
        /// Fragment duration in seconds.
        #[arg(long, default_value_t = 2.0)]
        fragment: f64,
    },
    /// Make a cue list into a timed-metadata track (SCTE-35 in an event message track) to
    /// list in a server manifest beside the title's media.
    ///
    /// ismtool cues breaks.json --duration 600 -o movie-scte35.mp4
    ///
    /// The list is a JSON array of {"time": s, "scte35": "<base64 or 0x hex>"} or
    /// {"time": s, "out": true|false, "id": n, "duration": s} (a splice_insert is made), or
    /// lines "<seconds> <section>".
    Cues {
        /// The cue list (JSON, or lines of time and section).
        input: std::path::PathBuf,
        /// Output file (default: the input with the extension .mp4).
        #[arg(short, long)]
        output: Option<std::path::PathBuf>,
        /// Seconds the track lasts at least: the title's duration.
        #[arg(long)]
        duration: Option<f64>,
        /// Fragment duration in seconds.
        #[arg(long, default_value_t = 2.0)]
        fragment: f64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Create { args } => create::run(&args),
        Command::Inspect {
            file,
            json,
            no_boxes,
        } => inspect::run(&file, json, !no_boxes),
        Command::Route { url, skip_rewrite } => route::run(&url, skip_rewrite),
        Command::Package {
            input,
            output,
            formats,
        } => package::run(&package::PackageArgs {
            input: &input,
            output: &output,
            formats: formats.as_deref(),
        }),
        Command::Text {
            input,
            output,
            format,
            language,
            fragment,
        } => text::run(&text::TextArgs {
            input: &input,
            output: output.as_deref(),
            format: format.as_deref(),
            language: &language,
            fragment_secs: fragment,
        }),
        Command::Cues {
            input,
            output,
            duration,
            fragment,
        } => cues::run(&cues::CuesArgs {
            input: &input,
            output: output.as_deref(),
            duration,
            fragment_secs: fragment,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ismtool: {message}");
            ExitCode::FAILURE
        }
    }
}
