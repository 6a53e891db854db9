//! DNS answers as NFLOG hands them over: a whole packet from its IP header.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = leash::codec::dns::parse_packet(data);
    // The message parser alone, so inputs need not be valid packets to
    // reach the name and record code.
    let _ = leash::codec::dns::parse_message(data);
});
