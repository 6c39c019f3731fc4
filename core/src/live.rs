//! Live channels: encoders push fragmented MP4 to a publishing point (`<ch>.isml/Streams(…)`),
//! the origin keeps it in an archive on disk beside the `.isml`, and serves it with a moving
//! window through the same packagers as VOD.
//!
//! - [`ingest`]: the request body split into boxes as it arrives;
//! - [`session`]: one ingest request as a pure state machine, from boxes to tracks and the
//!   archive operations that store them;
//! - [`store`]: those operations carried out on disk (blocking: drivers run them off their
//!   event loop);
//! - [`budget`]: the memory a worker lets unfinished fragments hold;
//! - [`spool`], [`record_bytes`]: a large fragment's payload on its way to the archive, written
//!   as it arrives;
//! - [`archive`]: the on-disk layout, its writer and its records;
//! - [`channel`], [`records`], [`window`]: the archive as egress reads it (each track's newest
//!   records in memory, grown by what was appended, older ones read from the file on demand),
//!   and the window a request plays;
//! - [`api`], [`admin`]: the Live API's reports, and publishing points made and removed;
//! - [`limits`], [`confined`]: what a location lets ingest do (names, tracks, channels), and
//!   the file rules (`disable_symlinks`, no FIFO) every live request reaches files under;
//! - [`timeline`]: how a fragment's times are judged against what its track holds.

pub mod admin;
pub mod api;
pub mod archive;
pub mod budget;
pub mod channel;
pub mod confined;
pub mod ingest;
pub mod limits;
pub mod record_bytes;
pub mod records;
pub mod session;
pub mod spool;
pub mod store;
pub mod timeline;
pub mod window;
