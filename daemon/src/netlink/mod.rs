//! Netlink: pure codecs for the kernel messages leash reads and sends
//! (conntrack, nf_tables set elements, rtnetlink), and the socket adapter.
//!
//! `nla`, `conntrack`, `nftables` and `route` only turn bytes into values
//! and back; `socket` is the one place that talks to the kernel.

pub mod nla;
pub mod conntrack;
pub mod nftables;
pub mod route;
pub mod socket;

#[cfg(test)]
mod captured;
#[cfg(test)]
mod kernel_tests;
