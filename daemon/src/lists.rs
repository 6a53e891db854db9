//! Deny-list files (SPEC §3): plain domains, hosts-file lines, adblock
//! domain rules and CIDRs, with `#` and `!` comments.
