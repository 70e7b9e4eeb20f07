//! bytes → prefect.yaml model → templating with fake values. See docs/fuzzing.md.
#![no_main]

#[path = "../entry.rs"]
#[allow(dead_code)] // each target uses one of the shared bodies
mod entry;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entry::prefect_yaml(data));
