//! NFQUEUE netlink messages, and the DNS parser on whatever payload they hold.
#![no_main]
use libfuzzer_sys::fuzz_target;
use leash::codec::{conntrack, nfqueue};

fuzz_target!(|data: &[u8]| {
    for m in conntrack::messages(data) {
        let Ok(m) = m else { break };
        if let Ok(Some(p)) = nfqueue::parse_message(m) {
            let _ = leash::codec::dns::parse_packet(p.payload);
        }
    }
});
