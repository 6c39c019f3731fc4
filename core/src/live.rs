//! Live channels: encoders push fragmented MP4 to a publishing point (`<ch>.isml/Streams(…)`),
//! the origin keeps it in an archive on disk beside the `.isml`, and serves it with a moving
//! window through the same packagers as VOD.
//!
//! - [`ingest`]: the request body split into boxes as it arrives;
//! - [`session`]: one ingest request, from boxes to tracks and archive records;
//! - [`archive`]: the on-disk layout, its writer and its records.

pub mod admin;
pub mod api;
pub mod archive;
pub mod channel;
pub mod ingest;
pub mod session;
pub mod window;
