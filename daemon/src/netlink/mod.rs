//! Netlink: pure codecs for the kernel messages leash reads and sends
//! (conntrack, NFLOG, nf_tables set elements, rtnetlink), and the socket adapter.
//!
//! `nla`, `conntrack`, `nflog`, `nftables`, `nft_events` and `route` only turn bytes into values
//! and back, and are tested without root on bytes captured from the kernel
//! (`captured`). `socket` is the one place that talks to the kernel.
//!
//! The daemon holds separate sockets for events and for requests:
//! - conntrack events: `NlSocket::open(NETLINK_NETFILTER,
//!   &[NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_DESTROY], 64 << 20)`;
//!   `RecvError::Overrun` means events were lost: dump to resynchronise;
//! - conntrack requests (`conntrack_dump`, `conntrack_delete`) and
//!   nf_tables requests (`nft_apply`): one `NETLINK_NETFILTER` socket each,
//!   no groups, `REQUEST_RCVBUF`;
//! - DNS answers: one `NETLINK_NETFILTER` socket, no groups, a large
//!   buffer, then `nflog_bind(sock, group)` for the nft `log group`;
//! - nf_tables notifications: one `NETLINK_NETFILTER` socket in
//!   `nft_events::NFNLGRP_NFTABLES`, to see leash's table damaged;
//! - rtnetlink events (`RTNLGRP_NEIGH`, `_LINK`, `_IPV4_IFADDR`,
//!   `_IPV6_IFADDR`) and an rtnetlink request socket for the dumps.

pub mod conntrack;
pub mod nflog;
pub mod nft_events;
pub mod nftables;
pub mod nla;
pub mod route;
pub mod socket;

#[cfg(test)]
pub(crate) mod captured;
#[cfg(test)]
mod kernel_tests;
