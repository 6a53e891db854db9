//! nf_tables notifications and GETTABLE replies.
#![no_main]
use libfuzzer_sys::fuzz_target;
use leash::codec::nft_events;

fuzz_target!(|data: &[u8]| {
    for ev in nft_events::events(data) {
        let _ = ev;
    }
    let _ = nft_events::parse_table(data);
});
