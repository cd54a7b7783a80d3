//! Integration tests of the damocles-manager binary.

mod params;
