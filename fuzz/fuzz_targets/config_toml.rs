//! The TOML configuration. Lossy UTF-8: the daemon rejects other bytes before
//! parsing, but the parser should survive them anyway.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let _ = leash::config::parse_toml(Path::new("/fuzz/leash.toml"), &String::from_utf8_lossy(data));
});
