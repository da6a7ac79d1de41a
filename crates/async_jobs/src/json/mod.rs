//! JSON tools that work on streams, so a module that prints hundreds of
//! megabytes never has its output held in memory, and on what Python's `json`
//! accepts, which is more than strict JSON:
//!
//! - [`mod@sanitize`]: makes JSON text strict UTF-8 (lone surrogates and bytes
//!   that are not UTF-8 in strings become U+FFFD);
//! - [`mod@scan`]: checks one object's grammar without building it, noting where
//!   its top-level members are, and writes it again member by member;
//! - [`mod@write`]: raw bytes as one JSON string;
//! - [`mod@object`]: objects written member by member, without a JSON library;
//! - [`mod@base64`]: raw bytes as one base64 JSON string, the lossless copy.

pub mod base64;
pub mod object;
pub mod sanitize;
pub mod scan;
pub mod write;

pub use base64::write_base64;
pub use object::ObjectText;
pub use sanitize::{SanitizedReader, Sanitizer, sanitize};
pub use scan::{Member, ScanError, Scanned, scan, splice};
pub use write::write_string;
