//! origin-core: the nginx-free heart of ngx-origin.
//!
//! Routing ([`url`]), directive-value validation ([`config`]) and, in later layers, the media
//! index and packagers. Nothing here sees an nginx type: where the core needs I/O it names a
//! trait that the glue implements, so every function is testable with byte slices.
#![deny(unsafe_code)]

pub mod base64;
pub mod buffers;
pub mod cache;
pub mod config;
pub mod crypto;
pub mod drm;
pub mod error;
pub mod filter;
pub mod fragment;
pub mod handling;
pub mod index;
pub mod ism;
pub mod live;
pub mod metrics;
pub mod mp4;
pub mod package;
pub mod presentation;
pub mod remote;
pub mod request;
pub mod s3;
pub mod segment;
pub mod source;
pub mod stored;
pub mod text;
pub mod url;

pub use error::Error;
