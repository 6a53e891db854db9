//! The one netlink socket adapter: a raw AF_NETLINK socket on tokio, with
//! request/reply bookkeeping (sequence numbers, acks, dump ends) and the
//! conveniences the daemon uses, built on the pure codecs.
//!
//! Use separate sockets for event subscriptions and for requests: replies
//! and multicast events would otherwise share one queue, and an event
//! burst could push out the ack a request is waiting for.

use std::collections::HashSet;
use std::io;
use std::mem;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::Mutex;

use super::conntrack::{self, CtEvent, Tuple};
use super::nflog;
use super::nftables::{BatchOp, ElemBatch};
use super::nla::{
    self, parse_done, parse_error, Messages, Msg, NlErrorMsg, NlMsgHdr, NLMSG_DONE, NLMSG_ERROR,
    NLMSG_MIN_TYPE, NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR,
};
use super::route::{self, AddrEvent, LinkEvent, NeighEvent, RouteEvent};

pub const NETLINK_ROUTE: i32 = libc::NETLINK_ROUTE;
pub const NETLINK_NETFILTER: i32 = libc::NETLINK_NETFILTER;

/// Receive buffer handed to recv: big enough for any netlink datagram the
/// kernel builds (dump skbs are capped at 32 KiB, events are single
/// messages), so MSG_TRUNC should never fire.
pub const RECV_BUF: usize = 64 * 1024;

/// How long a request may go without any reply before it fails. Reset by
/// every datagram, so long dumps are fine.
const REPLY_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Ops per nf_tables batch sendmsg: ~90 bytes each keeps a batch well under
/// the default 208 KiB send buffer, and its acks under the receive buffer.
const NFT_OPS_PER_BATCH: usize = 1000;

/// Receive buffer for request sockets: room for a batch's acks.
pub const REQUEST_RCVBUF: usize = 4 << 20;

const SOL_NETLINK: libc::c_int = 270;
const NETLINK_ADD_MEMBERSHIP: libc::c_int = 1;
const NETLINK_NO_ENOBUFS: libc::c_int = 5;
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;

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
    /// One request in flight at a time: replies to two would interleave.
    busy: Mutex<()>,
}

fn setsockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: passes a pointer to a live c_int and its exact size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const libc::c_int as *const libc::c_void,
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn kernel_addr() -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is plain old data; all-zero is valid.
    let mut a: libc::sockaddr_nl = unsafe { mem::zeroed() };
    a.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    a
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
        // SAFETY: plain syscall; the result is checked before use.
        let raw = unsafe {
            libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, protocol)
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if rcvbuf > 0 {
            let size = libc::c_int::try_from(rcvbuf).unwrap_or(libc::c_int::MAX);
            // FORCE passes the rmem_max cap but needs CAP_NET_ADMIN.
            setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, size)
                .or_else(|_| setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, size))?;
        }
        // Keep ENOBUFS reporting on: it is how lost events are noticed.
        setsockopt_int(raw, SOL_NETLINK, NETLINK_NO_ENOBUFS, 0)?;
        // Acks without the echoed request keep the queue small; extended
        // acks carry the kernel's reason text. Both are optional.
        let _ = setsockopt_int(raw, SOL_NETLINK, NETLINK_CAP_ACK, 1);
        let _ = setsockopt_int(raw, SOL_NETLINK, NETLINK_EXT_ACK, 1);

        let addr = kernel_addr();
        // SAFETY: `addr` is a valid sockaddr_nl of the given length.
        let r = unsafe {
            libc::bind(
                raw,
                &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
                mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut bound = kernel_addr();
        let mut len = mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: `bound` has room for `len` bytes.
        let r = unsafe {
            libc::getsockname(raw, &mut bound as *mut libc::sockaddr_nl as *mut libc::sockaddr, &mut len)
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        for &g in groups {
            let g = libc::c_int::try_from(g).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
            setsockopt_int(raw, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, g)?;
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
        Ok(NlSocket { fd, port: bound.nl_pid, seq: AtomicU32::new(start), busy: Mutex::new(()) })
    }

    /// Our netlink port id (the kernel's replies are addressed to it).
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
        buf.clear();
        buf.reserve(RECV_BUF);
        loop {
            match Self::recv_once(self.fd.get_ref().as_raw_fd(), buf) {
                Ok(Received::Data(n)) if n > buf.capacity() => return Err(RecvError::Truncated(n)),
                Ok(Received::Data(n)) => {
                    // SAFETY: the kernel initialised the first n bytes, and
                    // n is within the capacity (checked above).
                    unsafe { buf.set_len(n) };
                    return Ok(Some(n));
                }
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
        let mut buf = Vec::with_capacity(RECV_BUF);
        let mut n = 0;
        // Bounded: a kernel producing faster than we read must not hold us here.
        while n < MAX_DRAIN {
            buf.clear();
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
        let mut buf = Vec::with_capacity(RECV_BUF);
        let mut n = 0;
        while n < max {
            buf.clear();
            match Self::recv_once(self.fd.get_ref().as_raw_fd(), &mut buf) {
                Ok(_) => n += 1,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => continue,
                Err(_) => return (n, true),
            }
        }
        (n, false)
    }

    /// Receives one datagram from the kernel into `buf`, which is replaced
    /// by it (`buf[..n]`, `n` returned). Datagrams from other processes
    /// are dropped.
    pub async fn recv(&self, buf: &mut Vec<u8>) -> Result<usize, RecvError> {
        // Receive into spare capacity: zeroing 64 KiB per datagram would
        // cost more than the receive itself at 100k events/s.
        buf.clear();
        buf.reserve(RECV_BUF);
        loop {
            let mut guard = self.fd.readable().await.map_err(RecvError::Io)?;
            let r = guard.try_io(|fd| Self::recv_once(fd.as_raw_fd(), buf));
            match r {
                Ok(Ok(Received::Data(n))) if n > buf.capacity() => return Err(RecvError::Truncated(n)),
                Ok(Ok(Received::Data(n))) => {
                    // SAFETY: the kernel initialised the first n bytes, and
                    // n is within the capacity (checked above).
                    unsafe { buf.set_len(n) };
                    return Ok(n);
                }
                Ok(Ok(Received::Foreign)) => continue,
                Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => return Err(RecvError::Overrun),
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Err(RecvError::Io(e)),
                Err(_would_block) => continue,
            }
        }
    }

    /// One recvfrom into `buf`'s spare capacity (its length is left to the
    /// caller). Returns the datagram's full length even when truncated.
    fn recv_once(fd: RawFd, buf: &mut Vec<u8>) -> io::Result<Received> {
        let mut from = kernel_addr();
        let mut len = mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        let spare = buf.spare_capacity_mut();
        // SAFETY: `spare` and `from` are valid for writes of the sizes
        // given. MSG_TRUNC makes the kernel report the real length.
        let n = unsafe {
            libc::recvfrom(
                fd,
                spare.as_mut_ptr() as *mut libc::c_void,
                spare.len(),
                libc::MSG_TRUNC,
                &mut from as *mut libc::sockaddr_nl as *mut libc::sockaddr,
                &mut len,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if from.nl_pid != 0 {
            return Ok(Received::Foreign);
        }
        Ok(Received::Data(n as usize))
    }

    /// Sends one datagram (one message or a whole batch) to the kernel.
    pub fn send(&self, bytes: &[u8]) -> io::Result<()> {
        let to = kernel_addr();
        // SAFETY: `bytes` and `to` are valid for the sizes given.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                bytes.as_ptr() as *const libc::c_void,
                bytes.len(),
                0,
                &to as *const libc::sockaddr_nl as *const libc::sockaddr,
                mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n as usize != bytes.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short netlink send"));
        }
        Ok(())
    }

    /// Sends `bytes` and collects the answer: every message that asked for
    /// an ack gets its ack or error, and every dump runs to NLMSG_DONE.
    /// Kernel errors are returned in `Reply::acks`, not as `Err`.
    pub async fn exchange(&self, bytes: &[u8]) -> Result<Reply, NlError> {
        let _busy = self.busy.lock().await;
        let mut want_ack = HashSet::new();
        let mut want_done = HashSet::new();
        let mut ours = HashSet::new();
        let mut first_seq = None;
        for m in Messages::new(bytes) {
            let hdr = NlMsgHdr::parse(m.map_err(NlError::Decode)?).map_err(NlError::Decode)?;
            first_seq.get_or_insert(hdr.seq);
            ours.insert(hdr.seq);
            if hdr.flags & NLM_F_DUMP == NLM_F_DUMP {
                want_done.insert(hdr.seq);
            } else if hdr.flags & NLM_F_ACK != 0 {
                want_ack.insert(hdr.seq);
            }
        }
        let several = ours.len() > 1;
        self.send(bytes).map_err(NlError::Io)?;

        let mut reply = Reply::default();
        let mut buf = Vec::with_capacity(RECV_BUF);
        while !want_ack.is_empty() || !want_done.is_empty() {
            let n = match tokio::time::timeout(REPLY_IDLE_TIMEOUT, self.recv(&mut buf)).await {
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

/// Every conntrack entry, IPv4 and IPv6, as `New` events.
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
pub async fn conntrack_delete(sock: &NlSocket, orig: &Tuple, zone: u16) -> Result<bool, NlError> {
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

/// Makes NFLOG `group`'s packets come to `sock` (whole packets, one per
/// datagram). Open `sock` with no groups and a large receive buffer: a
/// burst of answers must not overrun it.
///
/// Packets that arrive between the bind and the last ack are dropped by
/// `exchange` (they are not replies); that only happens at start-up.
pub async fn nflog_bind(sock: &NlSocket, group: u16) -> Result<(), NlError> {
    let first = sock.alloc_seq(3);
    for req in nflog::bind_requests(group, first) {
        match sock.request(&req).await {
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
    tracing::debug!(group, port = sock.port_id(), "bound NFLOG group");
    Ok(())
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
