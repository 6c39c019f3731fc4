//! ISO Base Media File Format (ISO/IEC 14496-12) reading and writing.
//!
//! [`reader`] holds the checked cursor and the one box-header function; [`codec`] the sample
//! descriptions (avcC, hvcC, esds, dac3/dec3, …) and codec strings.

pub mod codec;
pub mod emsg;
pub mod fragment;
pub mod moov;
pub mod reader;
pub mod stream;
pub mod writer;

pub use moov::TrackKind;
pub use reader::{BoxHeader, FourCC, Reader};

/// Why a file could not be read as ISO-BMFF. Every variant names the box (`fourcc`) and the
/// absolute file offset where the problem is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mp4Error {
    /// Fewer bytes left in the box than the field or table needs.
    #[error("{fourcc} at offset {offset}: truncated (needs {needed} bytes, {available} left)")]
    Truncated {
        fourcc: FourCC,
        offset: u64,
        needed: u64,
        available: u64,
    },
    /// A box whose size reaches past its container (or the file).
    #[error(
        "{fourcc} at offset {offset}: size {size} exceeds the {available} bytes of its container"
    )]
    BoxOverrun {
        fourcc: FourCC,
        offset: u64,
        size: u64,
        available: u64,
    },
    /// A value that breaks the specification.
    #[error("{fourcc} at offset {offset}: {what}")]
    Invalid {
        fourcc: FourCC,
        offset: u64,
        what: &'static str,
    },
    /// A required box is absent.
    #[error("{parent} at offset {offset}: missing required {missing} box")]
    Missing {
        missing: FourCC,
        parent: FourCC,
        offset: u64,
    },
    /// A count or size larger than the origin accepts (guards allocations sized from input).
    #[error("{fourcc} at offset {offset}: {what} ({value}) exceeds the limit of {limit}")]
    TooLarge {
        fourcc: FourCC,
        offset: u64,
        what: &'static str,
        value: u64,
        limit: u64,
    },
    /// Valid but not supported by this origin.
    #[error("{fourcc} at offset {offset}: unsupported {what}")]
    Unsupported {
        fourcc: FourCC,
        offset: u64,
        what: &'static str,
    },
}

impl Mp4Error {
    /// The offset the error points at.
    pub fn offset(&self) -> u64 {
        match self {
            Mp4Error::Truncated { offset, .. }
            | Mp4Error::BoxOverrun { offset, .. }
            | Mp4Error::Invalid { offset, .. }
            | Mp4Error::Missing { offset, .. }
            | Mp4Error::TooLarge { offset, .. }
            | Mp4Error::Unsupported { offset, .. } => *offset,
        }
    }
}
