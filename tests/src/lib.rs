//! The leash lab: end-to-end tests of the real `leash` binary in network
//! namespaces (a router, a WAN with "cloud" hosts, LAN devices), asserting
//! on real kernel state (`nft -j`, conntrack), syslog lines and CLI output.
//!
//! - `dns`: dnsmasq resolvers with the test's records, a tiny DNS client.
//! - `flood`: fake neighbours by the thousand, conntrack bursts, and a
//!   poller timing `status` while they run.
//! - `http`: a static HTTP server in a namespace (lists by URL).
//! - `lab`: building a lab, running the daemon and the CLI, reading state.
//! - `netns`: namespaces, code run inside them, TCP/UDP helpers.
//! - `syslog`: the lab's syslog socket and a parser for leash's lines.
//! - `nft`: nft JSON set elements as text.
//! - `wait`: polling with deadlines (the lab never sleeps a fixed time).

pub mod dns;
pub mod flood;
pub mod hold;
pub mod http;
pub mod lab;
pub mod netns;
pub mod nft;
pub mod syslog;
pub mod wait;

pub use dns::{QType, Zone};
pub use lab::{ip, ip4, ip6, mac, Lab};
pub use syslog::{LogLine, PRI_ERR, PRI_INFO, PRI_NOTICE, PRI_WARNING};
