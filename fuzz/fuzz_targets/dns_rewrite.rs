//! A held DNS answer turned into NXDOMAIN: a whole packet from its IP
//! header, refused or rewritten whole. Whatever comes out must parse as an
//! answer with no records, RCODE 3 and right checksums.
#![no_main]
use leash::codec::{dns, dns_rewrite};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(out) = dns_rewrite::nxdomain_packet(data) else { return };
    assert!(dns_rewrite::checksums_ok(&out), "bad checksums: {out:02x?}");
    let answer = dns::parse_packet(&out).unwrap_or_else(|e| panic!("{e}: {out:02x?}"));
    assert!(answer.records.is_empty());
    // The DNS message follows the IPv4 header (options too) or the fixed
    // IPv6 header, then 8 bytes of UDP; RCODE is the low nibble of byte 3.
    let at = if out[0] >> 4 == 4 { usize::from(out[0] & 0x0f) * 4 } else { 40 } + 8;
    assert_eq!(out[at + 3] & 0x0f, 3);
});
