//! The module's jobs, each a driver of one kind of request: above [`crate::respond`], below
//! the [`crate::handler`] that picks one. Jobs do not use each other.
//!
//! - [`local`]: presentations of local files (VOD and live channels) through the core's
//!   request engine;
//! - [`remote`]: presentations of files behind `ism_proxy_pass` (HTTP or S3), read with
//!   subrequests;
//! - [`files`]: whole files (progressive downloads, `usp_prefer_static`);
//! - [`ingest`]: live ingest, its archive writes on the thread pool;
//! - [`api`]: the Live API's reports and changes of publishing points;
//! - [`status_page`]: the status endpoint (`origin_status`).

pub mod api;
pub mod files;
pub mod ingest;
pub mod local;
pub mod remote;
pub mod status_page;
