//! damocles-manager-api: golden JSON of every wire type, and the method names served.

mod golden;
#[path = "../../../../tests/support/golden_json.rs"]
mod golden_json;
#[cfg(feature = "server")]
mod methods;
