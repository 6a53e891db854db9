//! Third-party deny-list files (read lossily, as the daemon reads them).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = leash::policy::lists::parse_list(&String::from_utf8_lossy(data));
});
