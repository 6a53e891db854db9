//! ctnetlink events and dump replies.
#![no_main]
use libfuzzer_sys::fuzz_target;
use leash::codec::conntrack;

fuzz_target!(|data: &[u8]| {
    for m in conntrack::messages(data) {
        let Ok(m) = m else { break };
        let _ = conntrack::parse_message(m);
        let _ = conntrack::parse_dump_message(m);
    }
});
