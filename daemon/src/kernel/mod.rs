//! Adapter: the daemon's view of the kernel over netlink: conntrack events
//! and dumps, flow deletion, nftables set updates and notifications, and
//! rtnetlink links, addresses and neighbours. Thin: decoding lives in
//! `netlink::*` codecs, deciding in the engine (and `nft::watch`).
//!
//! The daemon holds separate sockets for events and for requests:
//! - conntrack events: `NlSocket::open(NETLINK_NETFILTER,
//!   &[NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_DESTROY], 64 << 20)`;
//!   `RecvError::Overrun` means events were lost: dump to resynchronise;
//! - conntrack requests (`conntrack_get_many`, `conntrack_delete`; dumps on
//!   a socket of their own, `DumpReader`) and
//!   nf_tables requests (`nft_apply`): one `NETLINK_NETFILTER` socket each,
//!   no groups, `REQUEST_RCVBUF`;
//! - DNS answers: one `NETLINK_NETFILTER` socket, no groups, a large
//!   buffer, then `nflog_bind(sock, group)` for the nft `log group`;
//! - nf_tables notifications: one `NETLINK_NETFILTER` socket in
//!   `nft_events::NFNLGRP_NFTABLES`, to see leash's table damaged;
//! - rtnetlink events (`RTNLGRP_NEIGH`, `_LINK`, `_IPV4_IFADDR`,
//!   `_IPV6_IFADDR`) and an rtnetlink request socket for the dumps.


pub mod socket;
#[cfg(test)]
mod tests;

use std::net::IpAddr;

use anyhow::Context;

use crate::codec::dns::{self, DnsAnswer};
use crate::engine::{BypassAttempt, Flow, FlowCounters};
use crate::codec::conntrack::{self, CtEvent, CtKind};
use crate::codec::nft_events::{self, NftEvent, TableInfo, NFNLGRP_NFTABLES};
use crate::codec::nftables::{ElemBatch, NFPROTO_INET};
use crate::codec::{nflog, route};
use socket::{NlSocket, RecvError};
use crate::nft::SetChange;
use crate::names::trust::Provenance;

const RT_RCVBUF: usize = 4 << 20;
/// A burst of answers (a page load resolves dozens of names) must not overrun.
const DNS_RCVBUF: usize = 8 << 20;
/// nf_tables notifications: a rebuild notifies every element it installs
/// (≈ 94 bytes each, in ≈ 3.8 kB datagrams), all queued before nft exits.
/// On 6.18, 4 MiB held a 40 000-element rebuild's, not a 60 000-element
/// one's. An overrun during our own rebuild is only a warning (the watch
/// ignores it); any other overrun makes a rebuild.
const NFT_EVENTS_RCVBUF: usize = 4 << 20;

const NFNLGRP_CONNTRACK_NEW: u32 = 1;
const NFNLGRP_CONNTRACK_DESTROY: u32 = 3;
const RTNLGRP_LINK: u32 = 1;
const RTNLGRP_NEIGH: u32 = 3;
const RTNLGRP_IPV4_IFADDR: u32 = 5;
const RTNLGRP_IPV6_IFADDR: u32 = 9;

pub enum NftRead {
    /// Notifications, in order.
    Events(Vec<NftEvent>),
    /// The kernel dropped notifications: changes may have gone unseen.
    Lost,
    Failed(anyhow::Error),
}

pub enum CtRead {
    /// New flows, in order, and the final counters of flows that ended.
    Flows(Vec<Flow>, Vec<FlowCounters>),
    /// The kernel dropped events: resync from a dump.
    Lost,
    Failed(anyhow::Error),
}

pub use crate::codec::route::RouteEvent;

pub struct Kernel {
    ct_events: NlSocket,
    ct_req: NlSocket,
    nft: NlSocket,
    nft_events: NlSocket,
    rt_events: NlSocket,
    rt_req: NlSocket,
    dns: NlSocket,
}

fn counters(e: &CtEvent) -> Option<FlowCounters> {
    Some(FlowCounters { id: e.id.unwrap_or(0), orig: e.orig, up: e.bytes_orig?, down: e.bytes_reply.unwrap_or(0) })
}


impl Kernel {
    /// `ct_buffer`: the conntrack event receive buffer (each event takes
    /// ≈1.3 kB of it, so 64 MiB holds a burst of ≈50 000).
    pub async fn open(ct_buffer: usize) -> anyhow::Result<Kernel> {
        Ok(Kernel {
            ct_events: NlSocket::open(libc::NETLINK_NETFILTER, &[NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_DESTROY], ct_buffer)?,
            ct_req: NlSocket::open(libc::NETLINK_NETFILTER, &[], 4 << 20)?,
            nft: NlSocket::open(libc::NETLINK_NETFILTER, &[], 1 << 20)?,
            nft_events: NlSocket::open(libc::NETLINK_NETFILTER, &[NFNLGRP_NFTABLES], NFT_EVENTS_RCVBUF)?,
            rt_events: NlSocket::open(
                libc::NETLINK_ROUTE,
                &[RTNLGRP_LINK, RTNLGRP_NEIGH, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR],
                RT_RCVBUF,
            )?,
            rt_req: NlSocket::open(libc::NETLINK_ROUTE, &[], RT_RCVBUF)?,
            dns: NlSocket::open(libc::NETLINK_NETFILTER, &[], DNS_RCVBUF)?,
        })
    }

    pub async fn read_ct(&self, buf: &mut Vec<u8>) -> CtRead {
        match self.ct_events.recv(buf).await {
            Ok(n) => {
                let mut flows = Vec::new();
                let mut ended = Vec::new();
                for msg in conntrack::messages(&buf[..n]) {
                    match msg.and_then(conntrack::parse_message) {
                        Ok(Some(ev @ CtEvent { kind: CtKind::Destroy, .. })) => ended.extend(counters(&ev)),
                        Ok(Some(CtEvent { kind: CtKind::New, orig, .. })) => flows.push(orig),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "malformed conntrack event skipped"),
                    }
                }
                CtRead::Flows(flows, ended)
            }
            Err(RecvError::Overrun) => CtRead::Lost,
            Err(e) => CtRead::Failed(e.into()),
        }
    }

    /// Drops the conntrack events queued now (before a resync dump, which
    /// covers them); returns how many datagrams went.
    pub fn drain_ct(&self) -> usize {
        self.ct_events.drain()
    }

    /// At most `max` queued conntrack datagrams dropped (a resync drains in
    /// pieces, between other work); whether the queue ran empty.
    pub fn drain_ct_some(&self, max: usize) -> (usize, bool) {
        self.ct_events.drain_some(max)
    }

    /// The conntrack table, read a datagram at a time (`FlowDump::next`).
    pub fn start_flow_dump(&self) -> anyhow::Result<FlowDump> {
        Ok(FlowDump(socket::DumpReader::start(libc::NETLINK_NETFILTER, conntrack::dump_request).context("starting a conntrack dump")?))
    }

    /// Byte counters of every flow (with `nf_conntrack_acct` on), handed to
    /// `each` a datagram at a time: the table is never held whole.
    pub async fn dump_counters(&self, mut each: impl FnMut(&FlowCounters)) -> anyhow::Result<()> {
        let mut dump = socket::DumpReader::start(libc::NETLINK_NETFILTER, conntrack::dump_request).context("starting a conntrack dump")?;
        while let Some(entries) = dump.next(|m| conntrack::parse_dump_message(m).ok().flatten()).await? {
            entries.iter().filter_map(counters).for_each(|c| each(&c));
        }
        Ok(())
    }

    /// Subscribes to the NFLOG group that carries DNS answers; true when
    /// each comes with its conntrack entry (see `socket::nflog_bind`).
    pub async fn bind_dns(&self, group: u16) -> anyhow::Result<bool> {
        socket::nflog_bind(&self.dns, group).await.with_context(|| format!("binding NFLOG group {group} for DNS answers"))
    }

    /// DNS answers from the NFLOG group; the count of packets that were
    /// not a readable answer comes back too.
    pub async fn read_dns(&self, buf: &mut Vec<u8>) -> anyhow::Result<Logged> {
        let n = self.dns.recv(buf).await?;
        Ok(dns_answers(&buf[..n]))
    }

    /// DNS answers already queued, without waiting; `None` when there are none.
    pub fn try_read_dns(&self, buf: &mut Vec<u8>) -> anyhow::Result<Option<Logged>> {
        Ok(self.dns.try_recv(buf)?.map(|n| dns_answers(&buf[..n])))
    }

    /// Fills in the conntrack entry of each answer NFLOG sent without one
    /// (kernels without conntrack's netlink glue), so that leash can check
    /// the device asked: the flow its answer would be the reply of.
    pub async fn look_up_flows(&self, answers: &mut [Snooped]) {
        let want: Vec<usize> = (0..answers.len()).filter(|&i| crate::names::trust::needs_lookup(&answers[i].1)).collect();
        if want.is_empty() {
            return;
        }
        let tuples: Vec<Flow> = want.iter().map(|&i| crate::names::trust::asked_flow(&answers[i].0)).collect();
        match socket::conntrack_get_many(&self.ct_req, &tuples).await {
            Ok(entries) => {
                for (i, e) in want.into_iter().zip(entries) {
                    answers[i].1.ct_orig = e.map(|e| e.orig);
                }
            }
            Err(e) => tracing::warn!(error = %e, answers = want.len(), "looking up DNS answers' flows failed; those answers will not count"),
        }
    }

    /// Deletes one flow by its original tuple; false when it was gone already.
    pub async fn cut_flow(&self, f: &Flow) -> anyhow::Result<bool> {
        let t = Flow { src: f.src, dst: f.dst, proto: f.proto, sport: f.sport, dport: f.dport };
        Ok(socket::conntrack_delete(&self.ct_req, &t, 0).await?)
    }

    /// Dumps the table and deletes the entries `cut` selects; returns how many went.
    ///
    /// The table is streamed a datagram at a time on a socket of its own, so
    /// a quarter-million-flow table never sits in memory whole.
    pub async fn cut_flows(&self, cut: impl Fn(&Flow, Option<&Flow>) -> bool) -> anyhow::Result<u64> {
        let mut dump = socket::DumpReader::start(libc::NETLINK_NETFILTER, conntrack::dump_request).context("starting a conntrack dump")?;
        let mut n = 0;
        while let Some(entries) = dump.next(|m| conntrack::parse_dump_message(m).ok().flatten()).await? {
            for e in entries.iter().filter(|e| cut(&e.orig, e.reply.as_ref())) {
                if socket::conntrack_delete(&self.ct_req, &e.orig, e.zone).await? {
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// Sends set changes as one nf_tables batch.
    pub async fn apply_sets(&self, table: &str, changes: &[SetChange]) -> anyhow::Result<()> {
        let mut batch = ElemBatch::new(table);
        for c in changes {
            match c {
                SetChange::Add { elem, timeout } => batch.add(elem, *timeout),
                SetChange::Delete(elem) => batch.delete(elem),
            }
        }
        socket::nft_apply(&self.nft, &batch).await?;
        Ok(())
    }

    /// The port of the socket that writes set elements: notifications of
    /// our own element updates carry it.
    pub fn nft_port(&self) -> u32 {
        self.nft.port_id()
    }

    /// nf_tables notifications (NFNLGRP_NFTABLES), one datagram's worth.
    pub async fn read_nft_events(&self, buf: &mut Vec<u8>) -> NftRead {
        match self.nft_events.recv(buf).await {
            Ok(n) => NftRead::Events(decode_nft_events(&buf[..n])),
            Err(RecvError::Overrun) => NftRead::Lost,
            Err(e) => NftRead::Failed(e.into()),
        }
    }

    /// Notifications already queued, without waiting; `None` when there are none.
    pub fn try_read_nft_events(&self, buf: &mut Vec<u8>) -> Option<NftRead> {
        match self.nft_events.try_recv(buf) {
            Ok(Some(n)) => Some(NftRead::Events(decode_nft_events(&buf[..n]))),
            Ok(None) => None,
            Err(RecvError::Overrun) => Some(NftRead::Lost),
            Err(e) => Some(NftRead::Failed(e.into())),
        }
    }

    /// `inet <table>` as the kernel holds it; `None` when it is gone.
    pub async fn nft_table(&self, table: &str) -> anyhow::Result<Option<TableInfo>> {
        Ok(socket::nft_get_table(&self.nft, NFPROTO_INET, table).await?)
    }

    pub async fn read_route(&self, buf: &mut Vec<u8>) -> anyhow::Result<Vec<RouteEvent>> {
        let n = self.rt_events.recv(buf).await?;
        Ok(route_events(&buf[..n]))
    }

    /// The neighbour table alone: to identify a device whose packet came
    /// before its neighbour event was read.
    pub async fn dump_neighbours(&self) -> anyhow::Result<Vec<RouteEvent>> {
        let mut out = Vec::new();
        for msg in self.rt_req.request(&route::dump_neighbours_request(4)).await? {
            out.extend(route_events(&msg));
        }
        Ok(out)
    }

    /// Single neighbour entries (address on a LAN interface), without
    /// reading the whole table: those found, as events. EOPNOTSUPP on
    /// kernels before 5.0 (the caller falls back to dumps).
    pub async fn lookup_neighbours(&self, asks: &[(u32, IpAddr)]) -> anyhow::Result<Vec<RouteEvent>> {
        let found = socket::route_get_neighbours(&self.rt_req, asks).await?;
        Ok(found.into_iter().map(RouteEvent::Neigh).collect())
    }

    /// Links, then addresses, then neighbours: the order the engine needs.
    pub async fn dump_routes(&self) -> anyhow::Result<Vec<RouteEvent>> {
        let mut out = Vec::new();
        for req in [route::dump_links_request(1), route::dump_addrs_request(2), route::dump_neighbours_request(3)] {
            for msg in self.rt_req.request(&req).await? {
                out.extend(route_events(&msg));
            }
        }
        Ok(out)
    }
}

/// A DNS answer read from NFLOG, with what the kernel said of its packet.
pub type Snooped = (DnsAnswer, Provenance);

/// A conntrack dump in progress, on its own socket.
pub struct FlowDump(socket::DumpReader);

impl FlowDump {
    /// The flows (original, reply) of the next datagram, some hundred at
    /// most; `None` once the table has been read.
    pub async fn next(&mut self) -> anyhow::Result<Option<Vec<(Flow, Option<Flow>)>>> {
        let batch = self.0.next(|m| match conntrack::parse_dump_message(m) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "malformed conntrack dump entry skipped");
                None
            }
        });
        Ok(batch.await?.map(|v| v.iter().map(|e| (e.orig, e.reply)).collect()))
    }
}

/// What one NFLOG datagram held: DNS answers, packets cut for
/// `dns_bypass` (logged with `nft::BYPASS_PREFIX`, never read as answers),
/// and how many packets were neither.
pub type Logged = (Vec<Snooped>, Vec<BypassAttempt>, u64);

/// A packet logged with the bypass prefix: its sender's MAC (the frame's
/// source; the cut rules sit on the forward hook, after a LAN interface)
/// and its tuple.
fn bypass_attempt(p: &nflog::NflogPacket) -> Option<BypassAttempt> {
    let flow = dns::packet_flow(p.payload).ok()?;
    Some(BypassAttempt { mac: p.hwaddr?, flow })
}

/// The DNS answers in one NFLOG datagram, the bypass attempts, and how
/// many packets in it were neither.
fn dns_answers(buf: &[u8]) -> Logged {
    let mut answers = Vec::new();
    let mut bypass = Vec::new();
    let mut bad = 0;
    for msg in conntrack::messages(buf) {
        match msg.and_then(nflog::parse_message) {
            Ok(Some(p)) if p.prefix == Some(crate::nft::BYPASS_PREFIX) => match bypass_attempt(&p) {
                Some(b) => bypass.push(b),
                None => bad += 1,
            },
            Ok(Some(p)) => match dns::parse_packet(p.payload) {
                Ok(a) => answers.push((a, Provenance { hook: p.hook, ct_info: p.ct_info, ct_orig: p.ct_orig })),
                Err(e) => {
                    bad += 1;
                    tracing::debug!(error = %e, "not a readable DNS answer");
                }
            },
            Ok(None) => {}
            Err(e) => {
                bad += 1;
                tracing::warn!(error = %e, "malformed NFLOG message skipped");
            }
        }
    }
    (answers, bypass, bad)
}

fn decode_nft_events(buf: &[u8]) -> Vec<NftEvent> {
    let mut out = Vec::new();
    for ev in nft_events::events(buf) {
        match ev {
            Ok(ev) => out.push(ev),
            Err(e) => tracing::warn!(error = %e, "malformed nf_tables notification skipped"),
        }
    }
    out
}


fn route_events(buf: &[u8]) -> Vec<RouteEvent> {
    let mut out = Vec::new();
    for msg in conntrack::messages(buf) {
        let parsed = match msg {
            Ok(m) => route::parse_message(m),
            Err(e) => {
                tracing::warn!(error = %e, "malformed rtnetlink message skipped");
                break;
            }
        };
        match parsed {
            Ok(Some(ev)) => out.push(ev),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "undecodable rtnetlink message skipped"),
        }
    }
    out
}
