//! Deny-list files (SPEC §3): plain domains, hosts-file lines, adblock
//! domain rules and CIDRs, with `#` and `!` comments.
// Interim: replaced by the list loader.
#[derive(Debug)]
pub struct LoadedList;
impl LoadedList {
    pub fn matches(&self, _dst: &crate::selector::Destination<'_>) -> bool {
        false
    }
}
