//! leash: a consent firewall for home networks.
//!
//! The pure core decides; thin adapters at the edge carry it out:
//! - `engine` turns what the kernel reports and the owner commands into
//!   effects (set changes, cuts, alert lines, writes); its tables live
//!   beside it (`devices`, `destinations`, `netmap`, `identify`);
//! - `policy` judges a destination (selectors, lists, geo); `names` knows
//!   which names a device resolved and which answers count; `config`
//!   reads TOML and UCI; `store` encodes what survives a restart; `nft`
//!   describes leash's table; `codec` turns kernel and network bytes into
//!   values; `alert` formats lines; `bounded` caps every table in O(1); `counter` counts
//!   events for `status` (also where there are no 64-bit atomics);
//! - adapters: `kernel` (netlink sockets), `nft::apply` (`nft -f`),
//!   `syslog`, `control` (the socket), the file writers in `store`;
//! - front ends: `daemon` (the event loop) and `cli`.

// Pure logic: no sockets, no clock; unit-tested.
pub mod alert;
pub mod bounded;
pub mod codec;
pub mod config;
pub mod counter;
pub mod engine;
pub mod hash;
pub mod mac;
pub mod names;
pub mod nft;
pub mod policy;
pub mod store;

// Adapters at the edge, and the two front ends (daemon loop, command line).
pub mod cli;
pub mod control;
pub mod daemon;
pub mod kernel;
pub mod logging;
/// Alerts beyond syslog: pure `message`/`queue`, adapters `exec` (and MQTT).
pub mod notify;
pub mod syslog;

/// The target triple this binary was built for (shown by `--version` and `status`).
pub const BUILD_TARGET: &str = env!("LEASH_TARGET");
