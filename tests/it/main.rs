//! Process-level tests: the real damocles-manager and damocles-worker binaries, on the devnet.

mod api;
mod auth;
mod cluster;
mod common;
mod e2e;
mod ext_python;
mod params;
mod post_s3;
mod powercut;
mod restart;
#[path = "../../objstore/s3/tests/it/server.rs"]
mod s3server;
mod stall;
mod stores;
mod worker;
