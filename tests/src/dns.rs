//! DNS in the lab: dnsmasq resolvers with the test's own records (one in the
//! router on `br-lan`, as on OpenWrt; optionally an "outside resolver" in the
//! WAN that devices ask directly, like 8.8.8.8), and a tiny stub client that
//! a device namespace uses to ask them (query bytes built by hand, one UDP
//! datagram, A/AAAA addresses read back).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use crate::netns::in_netns;
use crate::wait;

/// Where the outside resolver listens (a cloud host of the WAN).
pub const OUTSIDE_RESOLVER: &str = "198.51.100.20";

/// How long a resolver may take to start answering.
pub const RESOLVER_START: Duration = Duration::from_secs(5);

/// The question types the lab asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QType {
    A,
    Aaaa,
}

impl QType {
    pub fn code(self) -> u16 {
        match self {
            QType::A => 1,
            QType::Aaaa => 28,
        }
    }
}

/// The records a lab resolver answers, as dnsmasq options.
///
/// - `address(name, ip)`: `--address=/name/ip`: `name` and every name below
///   it (an A answer for an IPv4 address, AAAA for IPv6).
/// - `host(name, ip)`: `--host-record=name,ip`: that name only; also a valid
///   CNAME target (dnsmasq follows a `--cname` only to names it holds itself
///   as hosts, not to `--address` names).
/// - `cname(alias, target)`: `--cname=alias,target`.
#[derive(Debug, Clone, Default)]
pub struct Zone {
    args: Vec<String>,
}

impl Zone {
    pub fn new() -> Zone {
        Zone::default()
    }

    pub fn address(mut self, name: &str, ip: &str) -> Zone {
        let _: IpAddr = ip.parse().unwrap_or_else(|_| panic!("not an address: {ip}"));
        self.args.push(format!("--address=/{name}/{ip}"));
        self
    }

    pub fn host(mut self, name: &str, ip: &str) -> Zone {
        let _: IpAddr = ip.parse().unwrap_or_else(|_| panic!("not an address: {ip}"));
        self.args.push(format!("--host-record={name},{ip}"));
        self
    }

    pub fn cname(mut self, alias: &str, target: &str) -> Zone {
        self.args.push(format!("--cname={alias},{target}"));
        self
    }

    /// Any other dnsmasq option.
    pub fn arg(mut self, a: &str) -> Zone {
        self.args.push(a.to_string());
        self
    }

    pub fn args(&self) -> &[String] {
        &self.args
    }
}

/// A running dnsmasq in a namespace; killed on drop.
pub struct Resolver {
    pub ns: String,
    pub listen: Vec<IpAddr>,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Resolver {
    /// Starts `dnsmasq --no-daemon` in namespace `ns` on `listen` (port 53),
    /// files named `<dir>/<tag>.{pid,log}`, and waits until it answers.
    pub fn start(ns: &str, listen: &[IpAddr], dir: &Path, tag: &str, zone: &Zone) -> Resolver {
        let log = dir.join(format!("{tag}.log"));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--bind-interfaces"])
            .arg("--port=53")
            .arg("--user=root")
            // No cache unless the zone asks: tests see every answer made.
            .args(if zone.args().iter().any(|a| a.starts_with("--cache-size=")) { None } else { Some("--cache-size=0") })
            .arg(format!("--pid-file={}", dir.join(format!("{tag}.pid")).display()))
            .arg(format!("--log-facility={}", log.display()))
            // The readiness probe's own name: answered locally, never asked by tests.
            .arg("--host-record=ready.leash-lab.invalid,127.0.0.53");
        for a in listen {
            cmd.arg(format!("--listen-address={a}"));
        }
        cmd.args(zone.args()).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start dnsmasq in {ns}: {e} (apt-get install dnsmasq-base)"));
        // Ready when it answers its probe name on every listen address, from
        // inside its own namespace (over lo: the router's DNS rules never see it).
        let ready = wait::poll_until(RESOLVER_START, || {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            listen.iter().all(|a| query(ns, *a, "ready.leash-lab.invalid", QType::A, Duration::from_millis(200)).is_ok())
        });
        if let Ok(Some(st)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("dnsmasq in {ns} exited at start ({st}): {err}\n{}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        if !ready {
            let _ = child.kill();
            let _ = child.wait();
            panic!("dnsmasq in {ns} did not answer on {listen:?} within {RESOLVER_START:?}\n{}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        Resolver { ns: ns.to_string(), listen: listen.to_vec(), log, child: Some(child) }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// dnsmasq's own log (start-up lines, errors).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A parsed DNS reply: its rcode and the addresses of its A/AAAA records
/// (wherever in the CNAME chain they are).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub id: u16,
    pub rcode: u8,
    pub answers: u16,
    pub addrs: Vec<IpAddr>,
}

/// Query id: distinct per query of this process.
fn next_id() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = (std::process::id() as u16).wrapping_mul(7919);
    seed.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The query's bytes: header (RD set, one question), QNAME, QTYPE, QCLASS IN.
pub fn build_query(id: u16, name: &str, qtype: QType) -> Vec<u8> {
    let mut m = Vec::with_capacity(18 + name.len());
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&0x0100u16.to_be_bytes()); // standard query, recursion desired
    m.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    m.extend_from_slice(&[0; 6]); // AN, NS, AR counts
    for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        assert!(label.len() <= 63, "label too long: {label}");
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.code().to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes()); // IN
    m
}

/// A complete answer, as a forger would send it: the question `name`
/// and one A or AAAA record giving `addr` (TTL 300), flagged as a reply.
pub fn build_answer(id: u16, name: &str, addr: IpAddr) -> Vec<u8> {
    let qtype = if addr.is_ipv4() { QType::A } else { QType::Aaaa };
    let mut m = build_query(id, name, qtype);
    m[2] = 0x81; // QR, RD
    m[3] = 0x80; // RA, NOERROR
    m[7] = 1; // ANCOUNT
    m.extend_from_slice(&[0xc0, 12]); // the question's name
    m.extend_from_slice(&qtype.code().to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m.extend_from_slice(&300u32.to_be_bytes());
    match addr {
        IpAddr::V4(a) => {
            m.extend_from_slice(&4u16.to_be_bytes());
            m.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            m.extend_from_slice(&16u16.to_be_bytes());
            m.extend_from_slice(&a.octets());
        }
    }
    m
}

/// Skips a (possibly compressed) name; returns the offset after it.
fn skip_name(m: &[u8], mut off: usize) -> Option<usize> {
    loop {
        let len = *m.get(off)?;
        match len {
            0 => return Some(off + 1),
            l if l & 0xc0 == 0xc0 => return Some(off + 2),
            l => off += 1 + l as usize,
        }
    }
}

fn u16_at(m: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*m.get(off)?, *m.get(off + 1)?]))
}

/// Parses a reply simply: header, skip the questions, then the answer
/// section's A (4-byte) and AAAA (16-byte) records.
pub fn parse_reply(m: &[u8]) -> Option<Reply> {
    if m.len() < 12 || m[2] & 0x80 == 0 {
        return None; // not a response
    }
    let id = u16_at(m, 0)?;
    let rcode = m[3] & 0x0f;
    let qd = u16_at(m, 4)?;
    let an = u16_at(m, 6)?;
    let mut off = 12;
    for _ in 0..qd {
        off = skip_name(m, off)? + 4;
    }
    let mut addrs = Vec::new();
    for _ in 0..an {
        off = skip_name(m, off)?;
        let ty = u16_at(m, off)?;
        let rdlen = u16_at(m, off + 8)? as usize;
        let rdata = m.get(off + 10..off + 10 + rdlen)?;
        match (ty, rdlen) {
            (1, 4) => addrs.push(IpAddr::V4(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]))),
            (28, 16) => addrs.push(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(rdata).ok()?))),
            _ => {}
        }
        off += 10 + rdlen;
    }
    Some(Reply { id, rcode, answers: an, addrs })
}

/// Asks `server:53` from namespace `ns` over UDP and waits up to `timeout`
/// for the reply with the query's id.
pub fn query(ns: &str, server: IpAddr, name: &str, qtype: QType, timeout: Duration) -> std::io::Result<Reply> {
    let name = name.to_string();
    in_netns(ns, move || query_here(server, &name, qtype, timeout))
}

/// `query` from the calling thread's namespace (for code already running
/// in a device's namespace, e.g. "resolve, then connect at once").
pub fn query_here(server: IpAddr, name: &str, qtype: QType, timeout: Duration) -> std::io::Result<Reply> {
    let bind: SocketAddr = if server.is_ipv4() { "0.0.0.0:0".parse().unwrap() } else { "[::]:0".parse().unwrap() };
    let s = UdpSocket::bind(bind)?;
    s.connect(SocketAddr::new(server, 53))?;
    let id = next_id();
    s.send(&build_query(id, name, qtype))?;
    let end = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no DNS reply from {server} for {name}")));
        }
        s.set_read_timeout(Some(left))?;
        let n = match s.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock) => continue,
            Err(e) => return Err(e),
        };
        if let Some(r) = parse_reply(&buf[..n]).filter(|r| r.id == id) {
            return Ok(r);
        }
    }
}

/// `query_here` over TCP (RFC 1035 §4.2.2: each message after its 2-byte
/// length), for answers too big for UDP or clients that prefer TCP.
pub fn query_tcp_here(server: IpAddr, name: &str, qtype: QType, timeout: Duration) -> std::io::Result<Reply> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&SocketAddr::new(server, 53), timeout)?;
    s.set_read_timeout(Some(timeout))?;
    let id = next_id();
    let q = build_query(id, name, qtype);
    let mut m = (q.len() as u16).to_be_bytes().to_vec();
    m.extend_from_slice(&q);
    s.write_all(&m)?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf)?;
    parse_reply(&buf).filter(|r| r.id == id).ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "not the reply"))
}

/// Bulk queries for the bench: from namespace `ns`, asks `server` for
/// `names(i)` for i in 0..count, keeping at most `window` queries in flight
/// (a lost datagram is given up after `timeout`). Returns (replies received,
/// elapsed).
pub fn flood(ns: &str, server: IpAddr, count: usize, window: usize, qtype: QType, names: impl Fn(usize) -> String + Send + 'static) -> (usize, Duration) {
    in_netns(ns, move || {
        let bind: SocketAddr = if server.is_ipv4() { "0.0.0.0:0".parse().unwrap() } else { "[::]:0".parse().unwrap() };
        let s = UdpSocket::bind(bind).expect("bind");
        s.connect(SocketAddr::new(server, 53)).expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let t0 = Instant::now();
        let (mut sent, mut got, mut lost) = (0usize, 0usize, 0usize);
        let mut buf = [0u8; 4096];
        while got + lost < count {
            while sent < count && sent - got - lost < window {
                let _ = s.send(&build_query(sent as u16, &names(sent), qtype));
                sent += 1;
            }
            match s.recv(&mut buf) {
                Ok(n) if parse_reply(&buf[..n]).is_some() => got += 1,
                Ok(_) => {}
                // Nothing for 200 ms: count what is in flight as lost.
                Err(_) => lost = sent - got,
            }
        }
        (got, t0.elapsed())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_bytes_and_reply_parse() {
        let q = build_query(0x1234, "www.example.net", QType::Aaaa);
        assert_eq!(&q[..12], &[0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&q[12..], b"\x03www\x07example\x03net\x00\x00\x1c\x00\x01");
        // A reply: the question, a CNAME (compressed owner) and an A record.
        let mut r = q.clone();
        r[2] = 0x81;
        r[3] = 0x80;
        r[7] = 2;
        r.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 6, 3, b'c', b'd', b'n', 0xc0, 16]);
        r.extend_from_slice(&[0xc0, 12, 0, 28, 0, 1, 0, 0, 0, 60, 0, 16]);
        r.extend_from_slice(&"2001:db8:bad::7".parse::<Ipv6Addr>().unwrap().octets());
        let p = parse_reply(&r).unwrap();
        assert_eq!((p.id, p.rcode, p.answers), (0x1234, 0, 2));
        assert_eq!(p.addrs, ["2001:db8:bad::7".parse::<IpAddr>().unwrap()]);
        assert!(parse_reply(&q).is_none(), "a query is not a reply");
    }
}
