//! The one netlink socket adapter: a raw AF_NETLINK socket on tokio, with
//! request/reply bookkeeping (sequence numbers, acks, dump ends) and the
//! conveniences the daemon uses, built on the pure codecs.
//!
//! Use separate sockets for event subscriptions and for requests: replies
//! and multicast events would otherwise share one queue, and an event
//! burst could push out the ack a request is waiting for.

use std::collections::HashSet;
use std::io;
use std::io::IoSliceMut;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nix::sys::socket::{self as nsock, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType};
use nix::{setsockopt_impl, sockopt_impl};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::Mutex;

use crate::codec::conntrack::{self, CtEvent, Flow};
use crate::codec::nflog;
use crate::codec::nfqueue;
use crate::codec::nft_events::{self, TableInfo};
use crate::codec::nftables::{BatchOp, ElemBatch};
use crate::codec::nla::{
    self, parse_done, parse_error, Messages, Msg, NlErrorMsg, NlMsgHdr, NLMSG_DONE, NLMSG_ERROR,
    NLMSG_MIN_TYPE, NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR,
};
use crate::codec::route::{self, AddrEvent, LinkEvent, NeighEvent, RouteEvent};

pub const NETLINK_ROUTE: i32 = libc::NETLINK_ROUTE;
pub const NETLINK_NETFILTER: i32 = libc::NETLINK_NETFILTER;

/// Receive buffer handed to recv: big enough for any netlink datagram the
/// kernel builds (dump skbs are capped at 32 KiB, events are single
/// messages), so MSG_TRUNC should never fire.
pub const RECV_BUF: usize = 64 * 1024;

/// Receive buffer for the NFQUEUE socket: one queued packet is one
/// datagram, up to `nfqueue::MAX_PAYLOAD` bytes of packet plus its
/// attributes, which is more than `RECV_BUF`.
pub const NFQUEUE_RECV_BUF: usize = 128 * 1024;

/// How long a request may go without any reply before it fails. Reset by
/// every datagram, so long dumps are fine.
const REPLY_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Ops per nf_tables batch sendmsg: ~90 bytes each keeps a batch well under
/// the default 208 KiB send buffer, and its acks under the receive buffer.
const NFT_OPS_PER_BATCH: usize = 1000;

/// Receive buffer for request sockets: room for a batch's acks.
pub const REQUEST_RCVBUF: usize = 4 << 20;

// Netlink socket options nix has no name for.
sockopt_impl!(
    /// Acks without the echoed request: keeps the receive queue small.
    CapAck, SetOnly, libc::SOL_NETLINK, libc::NETLINK_CAP_ACK, bool);
sockopt_impl!(
    /// Extended acks: the kernel's reason text with an error.
    ExtAck, SetOnly, libc::SOL_NETLINK, libc::NETLINK_EXT_ACK, bool);
sockopt_impl!(
    /// Joins a multicast group by number.
    AddMembership, SetOnly, libc::SOL_NETLINK, libc::NETLINK_ADD_MEMBERSHIP, libc::c_int);

#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    /// ENOBUFS: the kernel dropped messages because our queue was full.
    /// Events are never re-sent: the reader must resynchronise (dump).
    #[error("netlink receive queue overran: messages were lost")]
    Overrun,
    /// A datagram larger than the buffer (cannot happen with RECV_BUF).
    #[error("netlink datagram of {0} bytes truncated")]
    Truncated(usize),
    #[error("netlink receive failed")]
    Io(#[source] io::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum NlError {
    #[error("netlink I/O failed")]
    Io(#[source] io::Error),
    #[error("netlink receive failed")]
    Recv(#[source] RecvError),
    #[error("no reply from the kernel for {0:?}")]
    Timeout(Duration),
    #[error("malformed netlink reply")]
    Decode(#[source] nla::DecodeError),
    #[error("malformed rtnetlink reply")]
    Route(#[source] route::RouteError),
    /// The kernel refused a request; `source` is its errno.
    /// Another socket holds the NFLOG group (ulogd, another leash, a
    /// `tcpdump -i nflog:N`): the kernel gives each group one listener.
    #[error("NFLOG group {group} is already bound by another socket (ulogd, `tcpdump -i nflog:{group}`, another leash?)")]
    NflogGroupTaken {
        group: u16,
        #[source]
        source: io::Error,
    },
    /// Another socket holds the NFQUEUE queue (another leash, a
    /// `--queue-num` user such as suricata or snort): one listener a queue.
    #[error("NFQUEUE queue {queue} is already bound by another socket (another leash, suricata, snort?)")]
    NfqueueTaken {
        queue: u16,
        #[source]
        source: io::Error,
    },
    #[error("kernel refused {what}{}", ext.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Kernel {
        what: String,
        ext: Option<String>,
        #[source]
        source: io::Error,
    },
}

impl NlError {
    /// The kernel's errno, for `Kernel` errors.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NlError::Kernel { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    fn kernel(what: String, e: &NlErrorMsg) -> NlError {
        NlError::Kernel { what, ext: e.ext_msg.clone(), source: io::Error::from_raw_os_error(e.errno) }
    }
}

/// Everything the kernel said in answer to one request.
#[derive(Debug, Default)]
pub struct Reply {
    /// Data messages (dump entries, replies), each a whole nlmsg.
    pub msgs: Vec<Vec<u8>>,
    /// Every ack and error, in arrival order (errno 0 = ack). A dump that
    /// ended in error appears here with the dump's seq.
    pub acks: Vec<NlErrorMsg>,
    /// The kernel flagged a dump as inconsistent (changed while dumped).
    pub interrupted: bool,
}

pub struct NlSocket {
    fd: AsyncFd<OwnedFd>,
    port: u32,
    seq: AtomicU32,
    /// One request in flight at a time (replies to two would interleave),
    /// and its receive buffer, zeroed once rather than per request.
    busy: Mutex<Vec<u8>>,
}

/// The kernel's netlink address (port 0).
fn kernel_addr() -> NetlinkAddr {
    NetlinkAddr::new(0, 0)
}

/// `buf` as a receive buffer of `RECV_BUF` bytes: zeroed once, then reused
/// as it is (zeroing 64 KiB per datagram would cost more than the receive
/// at 100k events/s). Callers read `buf[..n]`.
fn recv_buf(buf: &mut Vec<u8>) -> &mut [u8] {
    if buf.len() < RECV_BUF {
        buf.resize(RECV_BUF, 0);
    }
    &mut buf[..]
}

/// Datagrams `drain` reads at most in one call.
const MAX_DRAIN: usize = 1 << 16;

enum Received {
    Data(usize),
    /// A datagram from a userspace process, not the kernel: dropped.
    Foreign,
}

impl NlSocket {
    /// Opens a netlink socket of `protocol`, joins the multicast `groups`
    /// and sizes its receive buffer to `rcvbuf` bytes (0: leave the
    /// default). Must be called inside a tokio runtime.
    pub fn open(protocol: i32, groups: &[u32], rcvbuf: usize) -> io::Result<Self> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(io::Error::other("NlSocket::open needs a tokio runtime"));
        }
        let proto = match protocol {
            libc::NETLINK_ROUTE => SockProtocol::NetlinkRoute,
            libc::NETLINK_NETFILTER => SockProtocol::NetlinkNetFilter,
            _ => return Err(io::Error::from(io::ErrorKind::InvalidInput)),
        };
        let fd: OwnedFd = nsock::socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK, proto)?;
        if rcvbuf > 0 {
            // FORCE passes the rmem_max cap but needs CAP_NET_ADMIN.
            nsock::setsockopt(&fd, sockopt::RcvBufForce, &rcvbuf).or_else(|_| nsock::setsockopt(&fd, sockopt::RcvBuf, &rcvbuf))?;
        }
        // ENOBUFS reporting stays on (NETLINK_NO_ENOBUFS is off by default):
        // it is how lost events are noticed. CAP_ACK and EXT_ACK are optional.
        let _ = nsock::setsockopt(&fd, CapAck, &true);
        let _ = nsock::setsockopt(&fd, ExtAck, &true);
        nsock::bind(fd.as_raw_fd(), &kernel_addr())?;
        let bound: NetlinkAddr = nsock::getsockname(fd.as_raw_fd())?;
        for &g in groups {
            let g = libc::c_int::try_from(g).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
            nsock::setsockopt(&fd, AddMembership, &g)?;
        }
        // Start sequence numbers away from 0 so a reply meant for an
        // earlier socket on the same port is not mistaken for ours.
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(1);
        // SAFETY: an OwnedFd keeps its descriptor open and unchanged for as
        // long as the AsyncFd owns it.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(NlSocket { fd, port: bound.pid(), seq: AtomicU32::new(start), busy: Mutex::new(Vec::new()) })
    }

    /// Our netlink port id (the kernel's replies are addressed to it).
    /// The receive buffer the kernel granted (`SO_RCVBUF`: twice the size
    /// asked for, its accounting of skb overhead included).
    pub fn rcvbuf(&self) -> Option<usize> {
        nsock::getsockopt(self.fd.get_ref(), sockopt::RcvBuf).ok()
    }

    pub fn port_id(&self) -> u32 {
        self.port
    }

    pub fn next_seq(&self) -> u32 {
        self.alloc_seq(1)
    }

    /// Reserves `n` consecutive sequence numbers; returns the first.
    pub fn alloc_seq(&self, n: u32) -> u32 {
        self.seq.fetch_add(n, Ordering::Relaxed)
    }

    /// Receives one datagram if one is queued now (never waits).
    pub fn try_recv(&self, buf: &mut Vec<u8>) -> Result<Option<usize>, RecvError> {
        let buf = recv_buf(buf);
        loop {
            match Self::recv_once(self.fd.get_ref().as_raw_fd(), buf) {
                Ok(Received::Data(n)) if n > buf.len() => return Err(RecvError::Truncated(n)),
                Ok(Received::Data(n)) => return Ok(Some(n)),
                Ok(Received::Foreign) => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => return Err(RecvError::Overrun),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(RecvError::Io(e)),
            }
        }
    }

    /// Reads and drops every datagram queued now; returns how many.
    ///
    /// After an overrun the kernel reports no further loss on this socket
    /// until its queue has been empty once (netlink's congested bit), so a
    /// resync must drain the queue before it dumps: only then are losses
    /// during the dump reported again.
    pub fn drain(&self) -> usize {
        let mut buf = vec![0u8; RECV_BUF];
        let mut n = 0;
        // Bounded: a kernel producing faster than we read must not hold us here.
        while n < MAX_DRAIN {
            match Self::recv_once(self.fd.get_ref().as_raw_fd(), &mut buf) {
                Ok(_) => n += 1,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ENOBUFS again just says the same; anything else (EAGAIN) ends it.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => continue,
                Err(_) => return n,
            }
        }
        n
    }

    /// Reads and drops at most `max` queued datagrams: a bounded piece of
    /// `drain`, for a loop that must stay responsive. Returns how many went
    /// and whether the queue ran empty.
    pub fn drain_some(&self, max: usize) -> (usize, bool) {
        let mut buf = vec![0u8; RECV_BUF];
        let mut n = 0;
        while n < max {
            match Self::recv_once(self.fd.get_ref().as_raw_fd(), &mut buf) {
                Ok(_) => n += 1,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => continue,
                Err(_) => return (n, true),
            }
        }
        (n, false)
    }

    /// Receives one datagram from the kernel into `buf` (`buf[..n]`, `n`
    /// returned). Datagrams from other processes are dropped.
    pub async fn recv(&self, buf: &mut Vec<u8>) -> Result<usize, RecvError> {
        let buf = recv_buf(buf);
        loop {
            let mut guard = self.fd.readable().await.map_err(RecvError::Io)?;
            let r = guard.try_io(|fd| Self::recv_once(fd.as_raw_fd(), buf));
            match r {
                Ok(Ok(Received::Data(n))) if n > buf.len() => return Err(RecvError::Truncated(n)),
                Ok(Ok(Received::Data(n))) => return Ok(n),
                Ok(Ok(Received::Foreign)) => continue,
                Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => return Err(RecvError::Overrun),
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Err(RecvError::Io(e)),
                Err(_would_block) => continue,
            }
        }
    }

    /// One receive into `buf`. Returns the datagram's full length even when
    /// truncated (MSG_TRUNC).
    fn recv_once(fd: RawFd, buf: &mut [u8]) -> io::Result<Received> {
        let mut iov = [IoSliceMut::new(buf)];
        let msg = nsock::recvmsg::<NetlinkAddr>(fd, &mut iov, None, MsgFlags::MSG_TRUNC)?;
        if msg.address.is_some_and(|a| a.pid() != 0) {
            return Ok(Received::Foreign);
        }
        Ok(Received::Data(msg.bytes))
    }

    /// Sends one datagram (one message or a whole batch) to the kernel.
    pub fn send(&self, bytes: &[u8]) -> io::Result<()> {
        let n = nsock::sendto(self.fd.as_raw_fd(), bytes, &kernel_addr(), MsgFlags::empty())?;
        if n != bytes.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short netlink send"));
        }
        Ok(())
    }

    /// Sends `bytes` and collects the answer: every message that asked for
    /// an ack gets its ack or error, and every dump runs to NLMSG_DONE.
    /// Kernel errors are returned in `Reply::acks`, not as `Err`.
    pub async fn exchange(&self, bytes: &[u8]) -> Result<Reply, NlError> {
        let mut busy = self.busy.lock().await;
        let buf = &mut *busy;
        let mut want_ack = HashSet::new();
        let mut want_done = HashSet::new();
        let mut ours = HashSet::new();
        let mut first_seq = None;
        let mut batch = false;
        for m in Messages::new(bytes) {
            let hdr = NlMsgHdr::parse(m.map_err(NlError::Decode)?).map_err(NlError::Decode)?;
            if first_seq.is_none() {
                batch = hdr.ty == crate::codec::nftables::NFNL_MSG_BATCH_BEGIN;
            }
            first_seq.get_or_insert(hdr.seq);
            ours.insert(hdr.seq);
            if hdr.flags & NLM_F_DUMP == NLM_F_DUMP {
                want_done.insert(hdr.seq);
            } else if hdr.flags & NLM_F_ACK != 0 {
                want_ack.insert(hdr.seq);
            }
        }
        // Several independent requests (conntrack GETs) each get their own
        // answer; only an nf_tables batch is refused whole at its start.
        let several = batch && ours.len() > 1;
        self.send(bytes).map_err(NlError::Io)?;

        let mut reply = Reply::default();
        while !want_ack.is_empty() || !want_done.is_empty() {
            let n = match tokio::time::timeout(REPLY_IDLE_TIMEOUT, self.recv(buf)).await {
                Err(_) => return Err(NlError::Timeout(REPLY_IDLE_TIMEOUT)),
                Ok(r) => r.map_err(NlError::Recv)?,
            };
            for raw in Messages::new(&buf[..n]) {
                let raw = raw.map_err(NlError::Decode)?;
                let m = Msg::parse(raw).map_err(NlError::Decode)?;
                // Replies carry our port and one of our seqs; anything else
                // is left over from an earlier, abandoned request.
                if m.hdr.pid != self.port || !ours.contains(&m.hdr.seq) {
                    continue;
                }
                match m.hdr.ty {
                    NLMSG_ERROR => {
                        let e = parse_error(m.hdr.flags, m.payload).map_err(NlError::Decode)?;
                        want_ack.remove(&e.orig.seq);
                        want_done.remove(&e.orig.seq);
                        // An error on a batch's first message (BATCH_BEGIN)
                        // means the kernel looked at nothing after it.
                        if several && e.errno != 0 && Some(e.orig.seq) == first_seq {
                            want_ack.clear();
                            want_done.clear();
                        }
                        reply.acks.push(e);
                    }
                    NLMSG_DONE => {
                        want_done.remove(&m.hdr.seq);
                        let errno = parse_done(m.payload);
                        if errno != 0 {
                            reply.acks.push(NlErrorMsg { errno, orig: m.hdr, ext_msg: None });
                        }
                    }
                    ty if ty < NLMSG_MIN_TYPE => {}
                    _ => {
                        reply.interrupted |= m.hdr.flags & NLM_F_DUMP_INTR != 0;
                        reply.msgs.push(raw.to_vec());
                    }
                }
            }
        }
        Ok(reply)
    }

    /// Sends `bytes` and returns the reply messages; the first kernel
    /// error becomes `Err(NlError::Kernel)`.
    pub async fn request(&self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, NlError> {
        let reply = self.exchange(bytes).await?;
        if let Some(e) = reply.acks.iter().find(|e| e.errno != 0) {
            return Err(NlError::kernel(format!("request seq {}", e.orig.seq), e));
        }
        Ok(reply.msgs)
    }

    /// A dump, repeated (up to 3 times) while the kernel reports it as
    /// interrupted by concurrent changes.
    async fn dump(&self, make: impl Fn(u32) -> Vec<u8>, what: &str) -> Result<Vec<Vec<u8>>, NlError> {
        let mut tries = 0;
        loop {
            let reply = self.exchange(&make(self.next_seq())).await?;
            if let Some(e) = reply.acks.iter().find(|e| e.errno != 0) {
                return Err(NlError::kernel(format!("{what} dump"), e));
            }
            tries += 1;
            if !reply.interrupted || tries >= 3 {
                return Ok(reply.msgs);
            }
        }
    }
}

/// A dump read one datagram at a time: the kernel fills the next datagram
/// only when the last was read, so a table of a quarter million entries
/// never sits in memory whole, and the reader may do other work between
/// datagrams. It owns its socket, so no other request's replies mix in.
pub struct DumpReader {
    sock: NlSocket,
    seq: u32,
    buf: Vec<u8>,
    done: bool,
    /// The kernel flagged the dump as changed while it ran.
    pub interrupted: bool,
}

impl DumpReader {
    /// Opens a socket of `protocol` and sends the dump request `make(seq)`.
    pub fn start(protocol: i32, make: impl FnOnce(u32) -> Vec<u8>) -> Result<DumpReader, NlError> {
        let sock = NlSocket::open(protocol, &[], REQUEST_RCVBUF).map_err(NlError::Io)?;
        let seq = sock.next_seq();
        sock.send(&make(seq)).map_err(NlError::Io)?;
        Ok(DumpReader { sock, seq, buf: Vec::with_capacity(RECV_BUF), done: false, interrupted: false })
    }

    /// The entries of the next datagram, decoded by `parse` (None: skipped);
    /// `Ok(None)` once the dump has ended.
    pub async fn next<T>(&mut self, mut parse: impl FnMut(&[u8]) -> Option<T>) -> Result<Option<Vec<T>>, NlError> {
        if self.done {
            return Ok(None);
        }
        let n = match tokio::time::timeout(REPLY_IDLE_TIMEOUT, self.sock.recv(&mut self.buf)).await {
            Err(_) => return Err(NlError::Timeout(REPLY_IDLE_TIMEOUT)),
            Ok(r) => r.map_err(NlError::Recv)?,
        };
        let mut out = Vec::new();
        for raw in Messages::new(&self.buf[..n]) {
            let raw = raw.map_err(NlError::Decode)?;
            let m = Msg::parse(raw).map_err(NlError::Decode)?;
            if m.hdr.pid != self.sock.port || m.hdr.seq != self.seq {
                continue;
            }
            match m.hdr.ty {
                NLMSG_DONE => {
                    self.done = true;
                    let errno = parse_done(m.payload);
                    if errno != 0 {
                        let e = NlErrorMsg { errno, orig: m.hdr, ext_msg: None };
                        return Err(NlError::kernel("dump".into(), &e));
                    }
                }
                NLMSG_ERROR => {
                    self.done = true;
                    let e = parse_error(m.hdr.flags, m.payload).map_err(NlError::Decode)?;
                    if e.errno != 0 {
                        return Err(NlError::kernel("dump".into(), &e));
                    }
                }
                ty if ty < NLMSG_MIN_TYPE => {}
                _ => {
                    self.interrupted |= m.hdr.flags & NLM_F_DUMP_INTR != 0;
                    out.extend(parse(raw));
                }
            }
        }
        Ok(Some(out))
    }
}

/// Every conntrack entry, IPv4 and IPv6, as `New` events, held whole: for
/// the kernel tests; the daemon streams the table (`DumpReader`).
#[cfg(test)]
pub async fn conntrack_dump(sock: &NlSocket) -> Result<Vec<CtEvent>, NlError> {
    let msgs = sock.dump(conntrack::dump_request, "conntrack").await?;
    let mut out = Vec::with_capacity(msgs.len());
    for m in &msgs {
        if let Some(ev) = conntrack::parse_dump_message(m).map_err(NlError::Decode)? {
            out.push(ev);
        }
    }
    Ok(out)
}

/// Deletes one conntrack entry by its original tuple. `Ok(false)` when it
/// was already gone (ENOENT).
pub async fn conntrack_delete(sock: &NlSocket, orig: &Flow, zone: u16) -> Result<bool, NlError> {
    let req = conntrack::delete_request(sock.next_seq(), orig, zone);
    match sock.request(&req).await {
        Ok(_) => Ok(true),
        Err(e) if e.errno() == Some(libc::ENOENT) => Ok(false),
        Err(NlError::Kernel { ext, source, .. }) => Err(NlError::Kernel {
            what: format!("conntrack delete {:?} zone {zone}", orig),
            ext,
            source,
        }),
        Err(e) => Err(e),
    }
}

/// GETs sent in one datagram by `conntrack_get_many`.
const GETS_PER_SEND: usize = 64;

/// The conntrack entry that has each tuple in either direction, if any,
/// asked in datagrams of many requests: one round trip for a burst of answers.
pub async fn conntrack_get_many(sock: &NlSocket, tuples: &[Flow]) -> Result<Vec<Option<CtEvent>>, NlError> {
    let mut out = vec![None; tuples.len()];
    for (c, chunk) in tuples.chunks(GETS_PER_SEND).enumerate() {
        let first = sock.alloc_seq(chunk.len() as u32);
        let mut bytes = Vec::with_capacity(chunk.len() * 96);
        for (i, t) in chunk.iter().enumerate() {
            bytes.extend_from_slice(&conntrack::get_request(first.wrapping_add(i as u32), t));
        }
        let reply = sock.exchange(&bytes).await?;
        if let Some(e) = reply.acks.iter().find(|e| e.errno != 0 && e.errno != libc::ENOENT) {
            return Err(NlError::kernel("conntrack get".into(), e));
        }
        for m in &reply.msgs {
            let Ok(hdr) = NlMsgHdr::parse(m) else { continue };
            let i = hdr.seq.wrapping_sub(first) as usize;
            if i < chunk.len() {
                out[c * GETS_PER_SEND + i] = conntrack::parse_dump_message(m).map_err(NlError::Decode)?;
            }
        }
    }
    Ok(out)
}

/// Applies a set-element batch and checks every ack.
///
/// The kernel runs a batch as one transaction: one failing message aborts
/// all of them. Deleting an element that is not there fails with ENOENT,
/// which for us means "already done"; so such deletes are dropped and the
/// rest is sent again. Any other error names the set and the op.
pub async fn nft_apply(sock: &NlSocket, batch: &ElemBatch) -> Result<(), NlError> {
    for chunk in batch.chunks(NFT_OPS_PER_BATCH) {
        let mut cur = chunk;
        while !cur.is_empty() {
            let first = sock.alloc_seq(cur.seq_span());
            let reply = sock.exchange(&cur.encode(first)).await?;
            let mut gone = HashSet::new();
            for e in reply.acks.iter().filter(|e| e.errno != 0) {
                let idx = e.orig.seq.wrapping_sub(first).wrapping_sub(1) as usize;
                let Some(op) = cur.ops().get(idx) else {
                    return Err(NlError::kernel(format!("nf_tables batch on table {}", cur.table()), e));
                };
                match op {
                    BatchOp::Elem(el) if !el.add && e.errno == libc::ENOENT => {
                        gone.insert(idx);
                    }
                    _ => {
                        let what = format!("{} in set {} of table inet {}", op.describe(), op.set(), cur.table());
                        return Err(NlError::kernel(what, e));
                    }
                }
            }
            if gone.is_empty() {
                break;
            }
            cur = cur.retain(|i, _| !gone.contains(&i));
        }
    }
    Ok(())
}

/// The nf_tables table `family table` as the kernel holds it now;
/// `Ok(None)` when there is no such table. One small request and reply,
/// whatever the table holds: cheap enough to ask every second.
pub async fn nft_get_table(sock: &NlSocket, family: u8, table: &str) -> Result<Option<TableInfo>, NlError> {
    let req = nft_events::get_table_request(sock.next_seq(), family, table);
    match sock.request(&req).await {
        Ok(msgs) => match msgs.first() {
            Some(m) => nft_events::parse_table(m).map(Some).map_err(NlError::Decode),
            None => Err(NlError::Decode(nla::DecodeError::Missing("the table in the GETTABLE reply"))),
        },
        Err(e) if e.errno() == Some(libc::ENOENT) => Ok(None),
        Err(NlError::Kernel { ext, source, .. }) => {
            Err(NlError::Kernel { what: format!("nf_tables GETTABLE of table {table}"), ext, source })
        }
        Err(e) => Err(e),
    }
}

/// Makes NFLOG `group`'s packets come to `sock` (whole packets, one per
/// datagram), each with its conntrack entry attached where the kernel can
/// (returns true then; false on a kernel without conntrack's netlink glue,
/// where packets come without it). Open `sock` with no groups and a large
/// receive buffer: a burst of answers must not overrun it.
///
/// Packets that arrive between the bind and the last ack are dropped by
/// `exchange` (they are not replies); that only happens at start-up.
pub async fn nflog_bind(sock: &NlSocket, group: u16) -> Result<bool, NlError> {
    let first = sock.alloc_seq(3);
    let reqs = nflog::bind_requests(group, first, nflog::NFULNL_CFG_F_CONNTRACK);
    let mut with_ct = true;
    for (i, req) in reqs.iter().enumerate() {
        let r = match sock.request(req).await {
            Err(e) if i == 2 && e.errno() == Some(libc::EOPNOTSUPP) => {
                with_ct = false;
                let plain = nflog::bind_requests(group, sock.alloc_seq(3), 0);
                sock.request(&plain[2]).await
            }
            r => r,
        };
        match r {
            Ok(_) => {}
            // EPERM: the group belongs to another socket (kernel 6.18, in
            // the lab); EBUSY: this socket bound it already.
            Err(NlError::Kernel { source, .. })
                if matches!(source.raw_os_error(), Some(libc::EPERM | libc::EBUSY)) =>
            {
                return Err(NlError::NflogGroupTaken { group, source });
            }
            Err(NlError::Kernel { ext, source, .. }) => {
                return Err(NlError::Kernel { what: format!("NFLOG bind of group {group}"), ext, source });
            }
            Err(e) => return Err(e),
        }
    }
    tracing::debug!(group, port = sock.port_id(), with_ct, "bound NFLOG group");
    Ok(with_ct)
}

/// Makes NFQUEUE `queue`'s packets come to `sock`: whole packets (copy
/// range `nfqueue::MAX_PAYLOAD`), at most `maxlen` held at once, and
/// fail-open, with each packet's conntrack entry attached where the kernel
/// can (true then; false without conntrack's netlink glue).
///
/// Fail-open covers both ways leash can fall behind (net/netfilter/
/// nfnetlink_queue.c, `__nfqnl_enqueue_packet`, unchanged from 3.x to
/// 6.x): a full queue, and a failed delivery to our socket (its receive
/// buffer full); either way the kernel lets the packet pass unheld
/// (`NF_ACCEPT`) instead of dropping it, and a failed delivery also sets
/// ENOBUFS on the socket. Without the flag both drop the packet.
///
/// Returns too the packet messages that arrived before the last ack: they
/// are held in the kernel like any other and need their verdict. If the
/// flags step fails, the queue is released again rather than left bound
/// without fail-open.
pub async fn nfqueue_bind(sock: &NlSocket, queue: u16, maxlen: u32) -> Result<(bool, Vec<Vec<u8>>), NlError> {
    let mut early = Vec::new();
    let mut with_ct = true;
    let want = nfqueue::NFQA_CFG_F_FAIL_OPEN | nfqueue::NFQA_CFG_F_CONNTRACK;
    let reqs = nfqueue::bind_requests(queue, sock.alloc_seq(2), 0xffff, maxlen, want);
    let r = match nfqueue_config(sock, &reqs[0], &mut early).await {
        // EPERM: the queue belongs to another socket; EBUSY: this socket bound it already.
        Err(NlError::Kernel { source, .. }) if matches!(source.raw_os_error(), Some(libc::EPERM | libc::EBUSY)) => {
            return Err(NlError::NfqueueTaken { queue, source });
        }
        Err(e) => Err(e),
        Ok(()) => {
            let mut r = nfqueue_config(sock, &reqs[1], &mut early).await;
            // EAGAIN: the kernel has just loaded conntrack's netlink module; ask again.
            if matches!(&r, Err(e) if e.errno() == Some(libc::EAGAIN)) {
                let again = nfqueue::bind_requests(queue, sock.alloc_seq(2), 0xffff, maxlen, want);
                r = nfqueue_config(sock, &again[1], &mut early).await;
            }
            if matches!(&r, Err(e) if e.errno() == Some(libc::EOPNOTSUPP)) {
                with_ct = false;
                let plain = nfqueue::bind_requests(queue, sock.alloc_seq(2), 0xffff, maxlen, nfqueue::NFQA_CFG_F_FAIL_OPEN);
                r = nfqueue_config(sock, &plain[1], &mut early).await;
            }
            r
        }
    };
    if let Err(e) = r {
        // Harmless when the bind itself failed.
        let _ = nfqueue_config(sock, &nfqueue::unbind_request(queue, sock.next_seq()), &mut early).await;
        return Err(match e {
            NlError::Kernel { ext, source, .. } => NlError::Kernel { what: format!("NFQUEUE bind of queue {queue}"), ext, source },
            e => e,
        });
    }
    tracing::debug!(queue, port = sock.port_id(), with_ct, early = early.len(), "bound NFQUEUE queue");
    Ok((with_ct, early))
}

/// Sends one config request and waits for its ack, keeping the queued
/// packets that arrive meanwhile (`exchange` would drop them, and a held
/// packet nobody answers stays held until the socket closes).
async fn nfqueue_config(sock: &NlSocket, req: &[u8], early: &mut Vec<Vec<u8>>) -> Result<(), NlError> {
    let seq = NlMsgHdr::parse(req).map_err(NlError::Decode)?.seq;
    sock.send(req).map_err(NlError::Io)?;
    let mut buf = vec![0; NFQUEUE_RECV_BUF];
    loop {
        let n = match tokio::time::timeout(REPLY_IDLE_TIMEOUT, sock.recv(&mut buf)).await {
            Err(_) => return Err(NlError::Timeout(REPLY_IDLE_TIMEOUT)),
            // Fail-open passed what did not fit; nothing to catch up on.
            Ok(Err(RecvError::Overrun)) => continue,
            Ok(r) => r.map_err(NlError::Recv)?,
        };
        let mut acked = None;
        for raw in Messages::new(&buf[..n]) {
            let raw = raw.map_err(NlError::Decode)?;
            let m = Msg::parse(raw).map_err(NlError::Decode)?;
            if m.hdr.ty == NLMSG_ERROR && m.hdr.pid == sock.port_id() && m.hdr.seq == seq {
                acked = Some(parse_error(m.hdr.flags, m.payload).map_err(NlError::Decode)?);
            } else if m.hdr.ty >= NLMSG_MIN_TYPE {
                early.push(raw.to_vec());
            }
        }
        match acked {
            Some(e) if e.errno != 0 => return Err(NlError::kernel(format!("request seq {seq}"), &e)),
            Some(_) => return Ok(()),
            None => {}
        }
    }
}

fn route_events(msgs: &[Vec<u8>]) -> Result<Vec<RouteEvent>, NlError> {
    let mut out = Vec::with_capacity(msgs.len());
    for m in msgs {
        if let Some(ev) = route::parse_message(m).map_err(NlError::Route)? {
            out.push(ev);
        }
    }
    Ok(out)
}

/// The neighbour tables (ARP and ND) of every interface.
pub async fn route_dump_neighbours(sock: &NlSocket) -> Result<Vec<NeighEvent>, NlError> {
    let msgs = sock.dump(route::dump_neighbours_request, "neighbour").await?;
    Ok(route_events(&msgs)?
        .into_iter()
        .filter_map(|e| match e {
            RouteEvent::Neigh(n) => Some(n),
            _ => None,
        })
        .collect())
}

/// Looks up single neighbour entries, one request each (RTM_GETNEIGH for
/// one address on one interface): the entries found, and the addresses the
/// kernel has none for. One request per exchange, since `exchange` stops
/// waiting when the first of several messages fails. A kernel without the
/// lookup (before 5.0) refuses with EOPNOTSUPP: that is the error returned.
pub async fn route_get_neighbours(sock: &NlSocket, asks: &[(u32, IpAddr)]) -> Result<Vec<NeighEvent>, NlError> {
    let mut found = Vec::new();
    for &(ifindex, ip) in asks {
        let reply = sock.exchange(&route::get_neighbour_request(sock.next_seq(), ifindex, ip)).await?;
        match reply.acks.iter().find(|e| e.errno != 0) {
            None => found.extend(route_events(&reply.msgs)?.into_iter().filter_map(|e| match e {
                RouteEvent::Neigh(n) => Some(n),
                _ => None,
            })),
            Some(e) if e.errno == libc::EOPNOTSUPP => return Err(NlError::kernel("neighbour lookup (RTM_GETNEIGH)".into(), e)),
            // ENOENT: no entry; ENODEV: the interface went away meanwhile.
            Some(e) => tracing::trace!(%ip, ifindex, errno = e.errno, "no neighbour entry"),
        }
    }
    Ok(found)
}

pub async fn route_dump_links(sock: &NlSocket) -> Result<Vec<LinkEvent>, NlError> {
    let msgs = sock.dump(route::dump_links_request, "link").await?;
    Ok(route_events(&msgs)?
        .into_iter()
        .filter_map(|e| match e {
            RouteEvent::Link(l) => Some(l),
            _ => None,
        })
        .collect())
}

pub async fn route_dump_addrs(sock: &NlSocket) -> Result<Vec<AddrEvent>, NlError> {
    let msgs = sock.dump(route::dump_addrs_request, "address").await?;
    Ok(route_events(&msgs)?
        .into_iter()
        .filter_map(|e| match e {
            RouteEvent::Addr(a) => Some(a),
            _ => None,
        })
        .collect())
}
