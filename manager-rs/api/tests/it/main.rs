//! damocles-manager-api: golden JSON of every wire type, and the method names served.

mod golden;
#[cfg(feature = "server")]
mod methods;
