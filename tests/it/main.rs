//! Every integration test of this crate in one binary: one link of the whole
//! stack instead of one per file (a clean `cargo test` built 44 binaries).
//! Each module is one former test file; shared helpers are the modules
//! without tests.

mod common;

mod compose;
mod device_contract;
mod stack;
mod up;
