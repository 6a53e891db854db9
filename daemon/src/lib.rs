//! leash: a consent firewall for home networks.
//!
//! Pure logic (configuration, selectors, policy, device table, alert and
//! state codecs, kernel message building) lives in plain modules without
//! sockets; the adapters that touch the kernel, files and sockets are kept
//! thin and at the edge (`netlink::socket`, `nft::apply`, `syslog`,
//! `control::server`, `state::store`).

pub mod cidr;
pub mod config;
pub mod domainset;
pub mod geoip;
pub mod lists;
pub mod mac;
pub mod netlink;
pub mod selector;
pub mod vendor;
pub mod trust;
pub mod verdict;
pub mod alert;
pub mod bounded;
pub mod destinations;
pub mod devices;
pub mod dns;
#[cfg(test)]
mod dns_captured;
pub mod engine;
pub mod identify;
pub mod leases;
pub mod namecache;
pub mod netmap;
pub mod netset;
pub mod nft;
pub mod policy;
pub mod journal;
pub mod state;
pub mod syslog;
pub mod control;
pub mod table;
pub mod cli;
pub mod rpcd;
pub mod daemon;
pub mod kernel;
pub mod logging;

/// The target triple this binary was built for (shown by `--version` and `status`).
pub const BUILD_TARGET: &str = env!("LEASH_TARGET");
