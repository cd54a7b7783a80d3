//! Integration tests of damocles-worker, run against the real binary.

mod daemon;
mod processors;
#[path = "../../../vc-processors/tests/it/sealing.rs"]
mod sealing;
