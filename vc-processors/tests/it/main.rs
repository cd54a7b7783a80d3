//! Integration tests of vc-processors: the protocol through real child processes, and (with the
//! `builtin` feature) real 2 KiB sealing and proving through the builtin processors.

mod protocol;

#[cfg(feature = "builtin")]
mod builtin;
#[cfg(feature = "builtin")]
mod golden;
#[cfg(feature = "builtin")]
#[path = "../../../tests/support/golden_json.rs"]
mod golden_json;
#[cfg(feature = "builtin")]
mod sealing;
#[cfg(feature = "builtin")]
mod transfer_objects;
