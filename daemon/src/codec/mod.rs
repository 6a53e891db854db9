//! Pure codecs for everything that crosses the router or the kernel
//! boundary: netlink framing (`nla`), conntrack, NFLOG, NFQUEUE, nf_tables
//! set elements and notifications, rtnetlink, DNS answers, and the NXDOMAIN
//! answer that replaces a held one (`dns_rewrite`). They only turn
//! bytes into values and back, never panic on hostile bytes, and are
//! tested without root on captured bytes (`captured`, `dns_captured`).
//! The sockets that carry them are in `kernel`.

pub mod conntrack;
pub mod dns;
pub mod dns_rewrite;
pub mod nflog;
pub mod nfqueue;
pub mod nft_events;
pub mod nftables;
pub mod nla;
pub mod route;

#[cfg(test)]
pub(crate) mod captured;
#[cfg(test)]
mod dns_captured;
