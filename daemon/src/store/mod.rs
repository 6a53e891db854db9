//! What survives a restart, on flash: the state file (consents,
//! quarantines, first-seen times) and the block journal.

pub mod journal;
pub mod state;
