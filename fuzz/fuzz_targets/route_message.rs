//! rtnetlink messages (links, addresses, neighbours) as the kernel sends
//! them to leash's route sockets.
#![no_main]
use libfuzzer_sys::fuzz_target;
use leash::codec::{conntrack, route};

fuzz_target!(|data: &[u8]| {
    for msg in conntrack::messages(data) {
        let Ok(m) = msg else { break };
        let _ = route::parse_message(m);
    }
});
