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
//! - held DNS answers (`dns_hold`): one more such socket, opened by
//!   `bind_dns_queue`, then `nfqueue_bind(sock, queue, maxlen)`; verdicts
//!   go out on the same socket (the kernel takes them only from the
//!   socket that bound the queue);
//! - nf_tables notifications: one `NETLINK_NETFILTER` socket in
//!   `nft_events::NFNLGRP_NFTABLES`, to see leash's table damaged;
//! - rtnetlink events (`RTNLGRP_NEIGH`, `_LINK`, `_IPV4_IFADDR`,
//!   `_IPV6_IFADDR`) and an rtnetlink request socket for the dumps.


pub mod socket;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;

use crate::codec::dns::{self, DnsAnswer};
use crate::counter::Counter;
use crate::engine::{BypassAttempt, Flow, FlowCounters};
use crate::codec::conntrack::{self, CtEvent, CtKind};
use crate::codec::nft_events::{self, NftEvent, TableInfo, NFNLGRP_NFTABLES};
use crate::codec::nftables::{ElemBatch, NFPROTO_INET};
use crate::codec::nla::{self, Msg, NLMSG_ERROR};
use crate::codec::{nflog, nfqueue, route};
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

/// Packets the DNS queue holds at most (the kernel's default, too). Past
/// that the kernel lets answers pass unheld (NFQA_CFG_F_FAIL_OPEN): a
/// slow leash degrades to snooping, never to lost DNS. Answers of the
/// router's own resolver meet another limit first: a held packet still
/// counts against its sender's send buffer, and a non-blocking socket
/// with the default 212 992 bytes got EAGAIN (the resolver loses the
/// answer) after 256 held 100-byte, 167 500-byte or 93 1200-byte answers
/// (6.18, lab). Holding is only safe while verdicts come in milliseconds.
const DNS_QUEUE_MAXLEN: u32 = 1024;
/// Receive buffer of the queue socket: room for a full queue, so that
/// when leash falls behind the queue fills first. Each queued packet
/// costs a skb's truesize, not its length: on 6.18 (x86_64) 832 bytes for
/// a 128-byte packet, 2304 for 1430, 8448 for 4028 (a 4 kB EDNS answer).
/// The kernel doubles the value asked, so this holds twice that.
/// (A failed delivery fails open too, see `nfqueue_bind`, but costs the
/// hold of the answer and an ENOBUFS on the socket.)
const DNS_QUEUE_RCVBUF: usize = DNS_QUEUE_MAXLEN as usize * 8448;
/// Verdict datagrams stay well under the socket's send buffer (the kernel
/// refuses a datagram above it with EMSGSIZE); a bigger batch goes out in
/// several.
const VERDICT_DATAGRAM: usize = 128 << 10;

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
    /// Opened by the first `bind_dns_queue`.
    dns_queue: Option<DnsQueue>,
    /// The kernel reported lost events in the middle of a batch: the
    /// events read before it were handed out, the next read says `Lost`.
    ct_lost: AtomicBool,
}

/// Conntrack datagrams read per `read_ct` at most (each holds one event):
/// a backlog drains in batches, one loop turn and one DNS catch-up each,
/// while a turn stays short (≈ 128 events judged, well under a millisecond).
const CT_BATCH: usize = 128;

/// The socket that holds DNS answers in NFQUEUE, once bound.
struct DnsQueue {
    sock: NlSocket,
    queues: Vec<u16>,
    /// Packet messages that arrived during a bind: the next read hands
    /// them out before reading the socket.
    early: std::sync::Mutex<Vec<Vec<u8>>>,
    refused: Counter,
    overruns: Counter,
}

/// A DNS answer held in the queue: its id (for the verdict), what it says, and the packet.
#[derive(Debug)]
pub struct Held {
    pub id: u32,
    /// `Err` for a packet that is not a readable answer (or that the
    /// kernel copied only in part): let it go at once.
    pub answer: Result<DnsAnswer, dns::DnsError>,
    pub prov: Provenance,
    /// The packet from its network header on, for a rewrite.
    pub packet: Vec<u8>,
}

/// What went wrong on the queue socket so far (each is also logged).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Verdicts the kernel refused (an unknown id: already let go, or the
    /// queue was re-bound).
    pub refused_verdicts: u64,
    /// ENOBUFS on the socket: packets the kernel could not deliver, which
    /// it let pass unheld (fail-open).
    pub overruns: u64,
}

fn counters(e: &CtEvent) -> Option<FlowCounters> {
    Some(FlowCounters { id: e.id.unwrap_or(0), orig: e.orig, up: e.bytes_orig?, down: e.bytes_reply.unwrap_or(0) })
}


impl Kernel {
    /// `ct_buffer`: the conntrack event receive buffer asked for
    /// (`config::ConntrackBuffer`; the kernel grants twice it and counts
    /// ≈1.3 kB per queued event, so 64 MiB holds a burst of ≈100 000).
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
            dns_queue: None,
            ct_lost: AtomicBool::new(false),
        })
    }

    /// The conntrack event socket's receive buffer as the kernel counts it.
    pub fn ct_buffer_granted(&self) -> Option<usize> {
        self.ct_events.rcvbuf()
    }

    pub async fn read_ct(&self, buf: &mut Vec<u8>) -> CtRead {
        if self.ct_lost.swap(false, Ordering::Relaxed) {
            return CtRead::Lost;
        }
        let mut n = match self.ct_events.recv(buf).await {
            Ok(n) => n,
            Err(RecvError::Overrun) => return CtRead::Lost,
            Err(e) => return CtRead::Failed(e.into()),
        };
        let mut flows = Vec::new();
        let mut ended = Vec::new();
        // The datagrams queued behind this one join it, up to a batch.
        for read in 1.. {
            for msg in conntrack::messages(&buf[..n]) {
                match msg.and_then(conntrack::parse_message) {
                    Ok(Some(ev @ CtEvent { kind: CtKind::Destroy, .. })) => ended.extend(counters(&ev)),
                    Ok(Some(CtEvent { kind: CtKind::New, orig, .. })) => flows.push(orig),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "malformed conntrack event skipped"),
                }
            }
            if read >= CT_BATCH {
                break;
            }
            n = match self.ct_events.try_recv(buf) {
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(RecvError::Overrun) => {
                    self.ct_lost.store(true, Ordering::Relaxed);
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading queued conntrack events");
                    break;
                }
            };
        }
        CtRead::Flows(flows, ended)
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

    /// Closes the queue socket: from now on the queue's answers pass
    /// unheld (bypass). What it still held is dropped by the kernel, so
    /// release that first.
    pub fn close_dns_queue(&mut self) {
        self.dns_queue = None;
    }

    /// Opens (once) the queue socket and binds `queue` to it: whole
    /// packets (copy range 0xffff, a whole TCP answer), at most
    /// `DNS_QUEUE_MAXLEN` held, fail-open, and the conntrack entry attached
    /// where the kernel can (see `socket::nfqueue_bind`). Binding a queue
    /// this `Kernel` holds already does nothing. Dropping the `Kernel`
    /// closes the socket, which releases the queue; packets it still
    /// held are then dropped by the kernel.
    pub async fn bind_dns_queue(&mut self, queue: u16) -> anyhow::Result<()> {
        if self.dns_queue.as_ref().is_some_and(|q| q.queues.contains(&queue)) {
            return Ok(());
        }
        let q = match self.dns_queue.take() {
            Some(q) => q,
            None => {
                let sock = NlSocket::open(libc::NETLINK_NETFILTER, &[], DNS_QUEUE_RCVBUF).context("opening the DNS queue socket")?;
                DnsQueue { sock, queues: Vec::new(), early: Default::default(), refused: Counter::default(), overruns: Counter::default() }
            }
        };
        let q = self.dns_queue.insert(q);
        let (with_ct, early) = socket::nfqueue_bind(&q.sock, queue, DNS_QUEUE_MAXLEN)
            .await
            .with_context(|| format!("binding NFQUEUE queue {queue} to hold DNS answers"))?;
        q.queues.push(queue);
        q.early.lock().unwrap_or_else(|e| e.into_inner()).extend(early);
        tracing::info!(queue, with_ct, "holding DNS answers in NFQUEUE");
        Ok(())
    }

    pub fn dns_queue_bound(&self) -> bool {
        self.dns_queue.as_ref().is_some_and(|q| !q.queues.is_empty())
    }

    /// Held packets of the next datagram(s), and how many messages were
    /// not a readable packet (they name no id, so nothing can answer
    /// them). Refused verdicts and overruns are counted in
    /// `dns_queue_stats` and logged. Never returns while no queue is bound.
    pub async fn read_held(&self, buf: &mut Vec<u8>) -> anyhow::Result<(Vec<Held>, u64)> {
        let Some(q) = self.dns_queue.as_ref() else { return std::future::pending().await };
        if let Some(r) = q.take_early() {
            return Ok(r);
        }
        queue_buf(buf);
        loop {
            match q.sock.recv(buf).await {
                Ok(n) => return Ok(q.decode(&buf[..n])),
                Err(RecvError::Overrun) => q.overrun(),
                Err(e) => return Err(anyhow::Error::new(e).context("reading the DNS queue")),
            }
        }
    }

    /// Held packets already queued, without waiting; `None` when there are none.
    pub fn try_read_held(&self, buf: &mut Vec<u8>) -> anyhow::Result<Option<(Vec<Held>, u64)>> {
        let Some(q) = self.dns_queue.as_ref() else { return Ok(None) };
        if let Some(r) = q.take_early() {
            return Ok(Some(r));
        }
        queue_buf(buf);
        loop {
            match q.sock.try_recv(buf) {
                Ok(Some(n)) => return Ok(Some(q.decode(&buf[..n]))),
                Ok(None) => return Ok(None),
                Err(RecvError::Overrun) => q.overrun(),
                Err(e) => return Err(anyhow::Error::new(e).context("reading the DNS queue")),
            }
        }
    }

    /// Lets these packets go, in one datagram (concatenated
    /// NFQNL_MSG_VERDICT messages, no ACK requested; several datagrams
    /// only past `VERDICT_DATAGRAM` bytes): `None` = accept as is,
    /// `Some(bytes)` = accept with this replacement packet (checksums
    /// included: the kernel copies it as it is). Each verdict's seq is its
    /// packet id, so a refusal read later names the packet. A replacement
    /// over `nfqueue::MAX_PAYLOAD` bytes is an error and nothing is sent.
    pub fn send_verdicts(&self, queue: u16, verdicts: &[(u32, Option<&[u8]>)]) -> anyhow::Result<()> {
        let q = self.dns_queue.as_ref().context("no DNS queue is bound")?;
        if let Some((id, p)) = verdicts.iter().find_map(|(id, p)| p.filter(|p| p.len() > nfqueue::MAX_PAYLOAD).map(|p| (id, p))) {
            anyhow::bail!("replacement for held packet {id} has {} bytes, above the {} a verdict can carry", p.len(), nfqueue::MAX_PAYLOAD);
        }
        let mut out = Vec::with_capacity(verdicts.len() * 32);
        for &(id, payload) in verdicts {
            let m = nfqueue::verdict_message(queue, id, nfqueue::NF_ACCEPT, payload, id);
            if !out.is_empty() && out.len() + m.len() > VERDICT_DATAGRAM {
                q.sock.send(&out).with_context(|| format!("sending DNS queue verdicts to queue {queue}"))?;
                out.clear();
            }
            out.extend_from_slice(&m);
        }
        if !out.is_empty() {
            q.sock.send(&out).with_context(|| format!("sending DNS queue verdicts to queue {queue}"))?;
        }
        Ok(())
    }

    /// Refused verdicts and overruns on the queue socket so far.
    pub fn dns_queue_stats(&self) -> QueueStats {
        self.dns_queue.as_ref().map_or_else(QueueStats::default, |q| QueueStats {
            refused_verdicts: q.refused.get(),
            overruns: q.overruns.get(),
        })
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

/// Grows `buf` for the queue socket: a held packet of 64 KiB would not fit
/// the usual receive buffer (the receive would fail as truncated).
fn queue_buf(buf: &mut Vec<u8>) {
    if buf.len() < socket::NFQUEUE_RECV_BUF {
        buf.resize(socket::NFQUEUE_RECV_BUF, 0);
    }
}

impl DnsQueue {
    /// The packets kept from a bind, decoded; `None` when there are none.
    fn take_early(&self) -> Option<(Vec<Held>, u64)> {
        let early = std::mem::take(&mut *self.early.lock().unwrap_or_else(|e| e.into_inner()));
        if early.is_empty() {
            return None;
        }
        let (mut held, mut bad) = (Vec::new(), 0);
        for m in &early {
            let (h, b) = self.decode(m);
            held.extend(h);
            bad += b;
        }
        Some((held, bad))
    }

    fn overrun(&self) {
        self.overruns.bump();
        tracing::warn!("DNS queue socket overran: the kernel let answers pass unheld (fail-open)");
    }

    /// The held packets in one datagram, and how many messages in it were
    /// not a readable packet. Errors (refused verdicts) are counted.
    fn decode(&self, buf: &[u8]) -> (Vec<Held>, u64) {
        let mut held = Vec::new();
        let mut bad = 0;
        for msg in nla::Messages::new(buf) {
            let (raw, m) = match msg.and_then(|raw| Ok((raw, Msg::parse(raw)?))) {
                Ok(v) => v,
                Err(e) => {
                    bad += 1;
                    tracing::warn!(error = %e, "malformed NFQUEUE datagram skipped");
                    break;
                }
            };
            if m.hdr.ty == NLMSG_ERROR {
                match nla::parse_error(m.hdr.flags, m.payload) {
                    Ok(e) if e.errno == 0 => {}
                    Ok(e) => {
                        self.refused.bump();
                        // The seq of a verdict is the packet's id.
                        tracing::warn!(id = e.orig.seq, errno = e.errno, error = %std::io::Error::from_raw_os_error(e.errno), "the kernel refused a DNS queue verdict");
                    }
                    Err(e) => tracing::warn!(error = %e, "malformed netlink error on the DNS queue"),
                }
                continue;
            }
            match nfqueue::parse_message(raw) {
                Ok(Some(p)) => {
                    let answer = match p.cap_len {
                        // Only the start of the packet came: nothing to judge or rewrite.
                        Some(_) => Err(dns::DnsError::Truncated("queued copy of the packet")),
                        None => dns::parse_packet(p.payload),
                    };
                    if let Err(e) = &answer {
                        tracing::debug!(id = p.id, error = %e, "held packet is not a readable DNS answer");
                    }
                    let prov = Provenance { hook: Some(p.hook), ct_info: p.ct_info, ct_orig: p.ct_orig };
                    held.push(Held { id: p.id, answer, prov, packet: p.payload.to_vec() });
                }
                Ok(None) => {}
                Err(e) => {
                    bad += 1;
                    tracing::warn!(error = %e, "malformed NFQUEUE message skipped");
                }
            }
        }
        (held, bad)
    }
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
