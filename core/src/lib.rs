//! origin-core: the nginx-free heart of ngx-origin.
//!
//! Routing ([`url`]), server manifests ([`ism`]), the media index ([`index`]), the packagers
//! ([`package`]), content protection ([`drm`]), live channels ([`live`]) and the request
//! engine ([`request`]) that ties them together. Nothing here sees an nginx type.
//!
//! # Layers
//! A module imports only from its own layer or the ones below it (tests aside), and no folder's
//! modules use each other in a cycle; `scripts/check_layers.py` checks it. Lowest first:
//! 1. [`base64`], [`buffers`], [`filter`], [`markup`], [`mp4`], [`s3`], [`source`];
//! 2. [`crypto`], [`index`], [`url`];
//! 3. [`cache`], [`format`](mod@format), [`fragment`], [`ism`], [`mime`], [`segment`], [`text`];
//! 4. [`drm`], [`live`], [`stored`];
//! 5. [`presentation`]; 6. [`package`]; 7. [`config`] (directive values and the location's
//!    settings); 8. [`error`]; 9. [`metrics`], [`handling`] (the routing decision);
//!    10. [`request`]; 11. [`body`], [`remote`] (checks of what a backend answered).
//!
//! # Who does I/O
//! The request engine does none on a request's path: it says what it needs
//! ([`request::Need`]: a file opened, a byte range read) and its driver (the nginx glue,
//! `ismtool package`, the tests) supplies it, archive data files of a live channel included;
//! the time of a live request is passed in ([`request::Request::with_live`]). The engine reads
//! bytes only through the [`source::Source`]s a driver supplied: a mapping (memory), a
//! descriptor the driver opened (`pread`), bytes a remote driver fetched. The one clock it
//! reads is a monotonic stopwatch around index builds, for the metrics; no decision depends on
//! it.
//!
//! The core modules that do I/O, each for a driver and outside a request's steps:
//! - [`source`]: [`source::MmapSource`] and [`source::PreadSource`] open, stat and map local
//!   files (their constructors are what drivers call to supply a file); the mapping and its
//!   SIGBUS guard are the one `unsafe` module.
//! - [`live::store`] (with [`live::archive`]): the archive operations that live ingest's pure
//!   [`live::session`] queues, carried out on disk (appends, syncs, records, rotation,
//!   pruning, the track lock), which drivers run off their event loop.
//! - [`live::channel::ChannelReader`]: lists a channel's archive and reads its records, init
//!   and info files, for the egress driver before it runs a request. It opens each track's
//!   records file and keeps its newest records; a window that reaches older ones reads them
//!   through that open file ([`live::records::TrackRecords`]), as the engine reads media
//!   through a supplied source.
//! - [`live::api`] and [`live::admin`]: the Live API's reports (they read each track's stats)
//!   and the PUT and DELETE of a publishing point.
#![deny(unsafe_code)]

pub mod base64;
pub mod body;
pub mod buffers;
pub mod cache;
pub mod config;
pub mod crypto;
pub mod drm;
pub mod error;
pub mod events;
pub mod filter;
pub mod format;
pub mod fragment;
pub mod handling;
pub mod index;
pub mod ism;
pub mod live;
pub mod markup;
pub mod metrics;
pub mod mime;
pub mod mp4;
pub mod package;
pub mod presentation;
pub mod remote;
pub mod request;
pub mod s3;
pub mod scte35;
pub mod segment;
pub mod source;
pub mod stored;
pub mod text;
pub mod url;

pub use error::Error;
