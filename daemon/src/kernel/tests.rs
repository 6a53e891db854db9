//! Tests against the real kernel. They need root and a kernel that answers
//! NETLINK_NETFILTER; without them each prints "skipped: ..." and passes
//! (qemu-user refuses NETLINK_NETFILTER sockets with EPROTONOSUPPORT, so
//! cross-built tests skip these; `LEASH_SKIP_KERNEL_TESTS=1` skips them too). Each runs in its own throwaway
//! network namespace, entered by a dedicated thread (setns affects only
//! the calling thread, and the commands it spawns inherit it), and
//! removed by a guard even when the test fails.

use std::collections::HashMap;
use std::fs::File;
use std::future::Future;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::codec::conntrack::{self, CtKind, Flow, NFNLGRP_CONNTRACK_DESTROY, NFNLGRP_CONNTRACK_NEW};
use crate::codec::nft_events::{self, NftEvent, Object, NFNLGRP_NFTABLES};
use crate::codec::nftables::ElemBatch;
use crate::nft::Elem;
use crate::codec::route::{self, RouteEvent, NUD_PERMANENT, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR, RTNLGRP_LINK, RTNLGRP_NEIGH};
use super::socket::*;
use crate::mac::Mac;

fn kernel_available() -> bool {
    if std::env::var_os("LEASH_SKIP_KERNEL_TESTS").is_some_and(|v| !v.is_empty() && v != "0") {
        println!("skipped: LEASH_SKIP_KERNEL_TESTS is set");
        return false;
    }
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: needs root");
        return false;
    }
    // SAFETY: plain syscalls; the descriptor is closed right away.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_NETFILTER) };
    if fd < 0 {
        println!("skipped: cannot open a NETLINK_NETFILTER socket ({}; qemu-user?)", std::io::Error::last_os_error());
        return false;
    }
    unsafe { libc::close(fd) };
    true
}

/// A network namespace that exists for the life of the value.
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Netns {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("leash-nl-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        run(&["ip", "netns", "add", &name]);
        Netns { name }
    }

    /// Runs `f` on a thread inside the namespace, with a tokio runtime.
    fn run<F, Fut>(&self, f: F)
    where
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = ()>,
    {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                let ns = File::open(&path).expect("open netns");
                // SAFETY: plain syscall on a descriptor we hold open.
                let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                rt.block_on(f());
            });
            if let Err(p) = h.join() {
                std::panic::resume_unwind(p);
            }
        });
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Runs a command (in the calling thread's namespace); panics on failure.
fn run(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("spawn");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn nft_file(text: &str) {
    let path = std::env::temp_dir().join(format!("leash-nl-{}-{:?}.nft", std::process::id(), std::thread::current().id()));
    std::fs::write(&path, text).expect("write nft file");
    let p = path.to_string_lossy().into_owned();
    run(&["nft", "-f", &p]);
    let _ = std::fs::remove_file(path);
}

const TABLE: &str = "
table inet T {
    set block4 { type ether_addr . ipv4_addr; flags timeout; }
    set block6 { type ether_addr . ipv6_addr; flags timeout; }
    set qmac { type ether_addr; flags timeout; }
    set qaddr4 { type ipv4_addr; flags timeout; }
    chain pre {
        type filter hook prerouting priority -150;
        ct state new counter
    }
}
";

/// Elements of a set as `nft -j` lists them: key text -> timeout (s).
fn list_set(set: &str) -> HashMap<String, Option<u64>> {
    let json = run(&["nft", "-j", "list", "set", "inet", "T", set]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("nft json");
    fn key(v: &serde_json::Value) -> String {
        match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Object(o) if o.contains_key("concat") => {
                o["concat"].as_array().map(|a| a.iter().map(key).collect::<Vec<_>>().join(" . ")).unwrap_or_default()
            }
            other => other.to_string(),
        }
    }
    let mut out = HashMap::new();
    for item in v["nftables"].as_array().into_iter().flatten() {
        for e in item["set"]["elem"].as_array().into_iter().flatten() {
            match e.get("elem") {
                Some(el) => out.insert(key(&el["val"]), el["timeout"].as_u64()),
                None => out.insert(key(e), None),
            };
        }
    }
    out
}

fn mac(s: &str) -> Mac {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn kernel_nft_apply_adds_and_deletes_elements() {
    if !kernel_available() {
        return;
    }
    let ns = Netns::new();
    ns.run(|| async {
        nft_file(TABLE);
        let sock = NlSocket::open(NETLINK_NETFILTER, &[], REQUEST_RCVBUF).unwrap();
        let m = mac("aa:bb:cc:dd:ee:ff");
        let mut b = ElemBatch::new("T");
        b.add_to("block4", &Elem::Block(m, ip("192.0.2.1")), Some(Duration::from_secs(30)));
        b.add_to("block4", &Elem::Block(m, ip("192.0.2.2")), None);
        b.add_to("block6", &Elem::Block(m, ip("2001:db8::1")), Some(Duration::from_secs(3600)));
        b.add_to("qmac", &Elem::QuarantineMac(m), Some(Duration::from_secs(600)));
        b.add_to("qaddr4", &Elem::QuarantineAddr(ip("192.0.2.7")), Some(Duration::from_secs(60)));
        nft_apply(&sock, &b).await.unwrap();

        let s = list_set("block4");
        assert_eq!(s.get("aa:bb:cc:dd:ee:ff . 192.0.2.1"), Some(&Some(30)), "{s:?}");
        assert_eq!(s.get("aa:bb:cc:dd:ee:ff . 192.0.2.2"), Some(&None), "{s:?}");
        assert_eq!(list_set("block6").get("aa:bb:cc:dd:ee:ff . 2001:db8::1"), Some(&Some(3600)));
        assert_eq!(list_set("qmac").get("aa:bb:cc:dd:ee:ff"), Some(&Some(600)));
        assert_eq!(list_set("qaddr4").get("192.0.2.7"), Some(&Some(60)));

        // Delete, including one that is not there: still success.
        let mut d = ElemBatch::new("T");
        d.delete_from("block4", &Elem::Block(m, ip("192.0.2.1")));
        d.delete_from("block4", &Elem::Block(m, ip("192.0.2.99")));
        d.delete_from("qmac", &Elem::QuarantineMac(m));
        nft_apply(&sock, &d).await.unwrap();
        let s = list_set("block4");
        assert!(!s.contains_key("aa:bb:cc:dd:ee:ff . 192.0.2.1"), "{s:?}");
        assert!(s.contains_key("aa:bb:cc:dd:ee:ff . 192.0.2.2"), "{s:?}");
        assert!(list_set("qmac").is_empty());

        // A missing delete aborts the kernel's whole transaction; the
        // adapter must resend the rest so that the add still lands.
        let mut mixed = ElemBatch::new("T");
        mixed.delete_from("qaddr4", &Elem::QuarantineAddr(ip("192.0.2.200")));
        mixed.add_to("qaddr4", &Elem::QuarantineAddr(ip("192.0.2.8")), Some(Duration::from_secs(60)));
        mixed.delete_from("qmac", &Elem::QuarantineMac(mac("aa:bb:cc:dd:ee:01")));
        nft_apply(&sock, &mixed).await.unwrap();
        assert!(list_set("qaddr4").contains_key("192.0.2.8"));

        // Flush empties a set.
        let mut f = ElemBatch::new("T");
        f.flush_set("block4");
        nft_apply(&sock, &f).await.unwrap();
        assert!(list_set("block4").is_empty());

        // A real error names the set and the op, and nothing is applied.
        let mut bad = ElemBatch::new("T");
        bad.add_to("qaddr4", &Elem::QuarantineAddr(ip("192.0.2.9")), None);
        bad.add_to("nosuchset", &Elem::QuarantineAddr(ip("192.0.2.10")), None);
        let err = nft_apply(&sock, &bad).await.unwrap_err();
        assert_eq!(err.errno(), Some(libc::ENOENT));
        let text = err.to_string();
        assert!(text.contains("nosuchset") && text.contains("add 192.0.2.10"), "{text}");
        assert!(!list_set("qaddr4").contains_key("192.0.2.9"), "transaction must be all-or-nothing");
        // Wrong key length for the set (IPv6 into an IPv4 set).
        let mut bad = ElemBatch::new("T");
        bad.add_to("qaddr4", &Elem::QuarantineAddr(ip("2001:db8::5")), None);
        assert!(nft_apply(&sock, &bad).await.is_err());

        // A big batch goes out in several transactions.
        let mut big = ElemBatch::new("T");
        for i in 0..2500u32 {
            let a = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            big.add_to("qaddr4", &Elem::QuarantineAddr(a.into()), Some(Duration::from_secs(120)));
        }
        nft_apply(&sock, &big).await.unwrap();
        // 192.0.2.7 and 192.0.2.8 from above, plus the 2500.
        assert_eq!(list_set("qaddr4").len(), 2502);
    });
}

/// Reads events until `want` says yes, or panics after `within`.
async fn wait_event(sock: &NlSocket, within: Duration, mut want: impl FnMut(&conntrack::CtEvent) -> bool) {
    let end = Instant::now() + within;
    let mut buf = Vec::new();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, sock.recv(&mut buf)).await.expect("event timeout").unwrap();
        for m in conntrack::messages(&buf[..n]) {
            if let Some(ev) = conntrack::parse_message(m.unwrap()).unwrap() {
                if want(&ev) {
                    return;
                }
            }
        }
    }
}

#[test]
fn kernel_conntrack_events_dump_and_delete() {
    if !kernel_available() {
        return;
    }
    let ns = Netns::new();
    ns.run(|| async {
        nft_file(TABLE);
        let events = NlSocket::open(NETLINK_NETFILTER, &[NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_DESTROY], 64 << 20).unwrap();
        let req = NlSocket::open(NETLINK_NETFILTER, &[], REQUEST_RCVBUF).unwrap();
        run(&["conntrack", "-I", "-s", "192.0.2.1", "-d", "198.51.100.2", "-p", "tcp", "--sport", "1234", "--dport", "443", "--state", "ESTABLISHED", "-t", "60"]);
        run(&["conntrack", "-I", "-s", "2001:db8::1", "-d", "2001:db8::2", "-p", "udp", "--sport", "5353", "--dport", "53", "-t", "60"]);
        let tcp = Flow { src: ip("192.0.2.1"), dst: ip("198.51.100.2"), proto: 6, sport: 1234, dport: 443 };
        let udp6 = Flow { src: ip("2001:db8::1"), dst: ip("2001:db8::2"), proto: 17, sport: 5353, dport: 53 };
        let mut seen = (false, false);
        wait_event(&events, Duration::from_secs(5), |ev| {
            assert_eq!(ev.kind, CtKind::New);
            seen.0 |= ev.orig == tcp;
            seen.1 |= ev.orig == udp6;
            seen.0 && seen.1
        })
        .await;

        let dump = conntrack_dump(&req).await.unwrap();
        assert!(dump.iter().any(|e| e.orig == tcp && e.kind == CtKind::New), "{dump:?}");
        assert!(dump.iter().any(|e| e.orig == udp6), "{dump:?}");
        let id = dump.iter().find(|e| e.orig == tcp).and_then(|e| e.id);
        assert!(id.is_some());

        assert!(conntrack_delete(&req, &tcp, 0).await.unwrap());
        wait_event(&events, Duration::from_secs(5), |ev| ev.kind == CtKind::Destroy && ev.orig == tcp).await;
        let listed = run(&["conntrack", "-L"]);
        assert!(!listed.contains("sport=1234"), "{listed}");
        assert!(listed.contains("sport=5353"), "{listed}");
        // Gone already: not an error.
        assert!(!conntrack_delete(&req, &tcp, 0).await.unwrap());
        // IPv6 delete too.
        assert!(conntrack_delete(&req, &udp6, 0).await.unwrap());
        assert!(conntrack_dump(&req).await.unwrap().is_empty());
    });
}

#[test]
fn kernel_conntrack_dump_read_a_datagram_at_a_time() {
    if !kernel_available() {
        return;
    }
    const N: u32 = 3000;
    let ns = Netns::new();
    ns.run(|| async {
        nft_file(TABLE);
        let path = std::env::temp_dir().join(format!("leash-nl-stream-{}", std::process::id()));
        let text: String = (0..N).map(|i| format!("-I -s 10.2.{}.{} -d 198.51.100.1 -p udp --sport 4000 --dport 53 -t 120\n", i >> 8, i & 0xff)).collect();
        std::fs::write(&path, text).unwrap();
        run(&["conntrack", "-R", path.to_str().unwrap()]);
        let _ = std::fs::remove_file(&path);
        let mut dump = DumpReader::start(NETLINK_NETFILTER, conntrack::dump_request).unwrap();
        let (mut entries, mut datagrams, mut biggest) = (0usize, 0, 0);
        while let Some(batch) = dump.next(|m| conntrack::parse_dump_message(m).ok().flatten()).await.unwrap() {
            datagrams += 1;
            biggest = biggest.max(batch.len());
            entries += batch.iter().filter(|e| e.orig.dst == ip("198.51.100.1")).count();
        }
        assert_eq!(entries, N as usize);
        assert!(datagrams > 3 && biggest < N as usize, "{datagrams} datagrams, at most {biggest} entries each");
        assert!(dump.next(|_| Some(())).await.unwrap().is_none(), "ended stays ended");
    });
}

#[test]
fn kernel_conntrack_burst_is_never_lost_silently() {
    if !kernel_available() {
        return;
    }
    const N: u32 = 20_000;
    let ns = Netns::new();
    ns.run(|| async {
        nft_file(TABLE);
        let events = NlSocket::open(NETLINK_NETFILTER, &[NFNLGRP_CONNTRACK_NEW], 64 << 20).unwrap();
        let path = std::env::temp_dir().join(format!("leash-nl-burst-{}", std::process::id()));
        let mut text = String::new();
        for i in 0..N {
            let (a, b) = ((i >> 8) & 0xff, i & 0xff);
            text.push_str(&format!("-I -s 10.1.{a}.{b} -d 198.51.100.1 -p udp --sport 4000 --dport 53 -t 120\n"));
        }
        std::fs::write(&path, text).unwrap();
        let start = Instant::now();
        let mut child = Command::new("conntrack")
            .arg("-R")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut buf = Vec::new();
        let mut count = 0u32;
        let mut overrun = false;
        let mut exited = None;
        let mut idle_since_exit = Duration::ZERO;
        while count < N {
            match tokio::time::timeout(Duration::from_millis(200), events.recv(&mut buf)).await {
                Err(_) => {
                    if exited.is_none() {
                        exited = child.try_wait().unwrap();
                    } else {
                        idle_since_exit += Duration::from_millis(200);
                        if idle_since_exit >= Duration::from_secs(2) {
                            break;
                        }
                    }
                }
                Ok(Err(RecvError::Overrun)) => {
                    overrun = true;
                    break;
                }
                Ok(r) => {
                    let n = r.unwrap();
                    for m in conntrack::messages(&buf[..n]) {
                        if let Some(ev) = conntrack::parse_message(m.unwrap()).unwrap() {
                            if ev.kind == CtKind::New {
                                count += 1;
                            }
                        }
                    }
                }
            }
        }
        let elapsed = start.elapsed();
        // Reaps the loader (or returns its status if already reaped).
        let status = child.wait().unwrap();
        let _ = std::fs::remove_file(&path);
        println!("burst: {count} of {N} NEW events received in {elapsed:?} with a 64 MiB buffer; overrun reported: {overrun}; loader {status}");
        assert!(count == N || overrun, "silent loss: {count} of {N} and no overrun");
    });
}

#[test]
fn kernel_route_neighbours_links_addrs() {
    if !kernel_available() {
        return;
    }
    let ns = Netns::new();
    ns.run(|| async {
        let events = NlSocket::open(NETLINK_ROUTE, &[RTNLGRP_NEIGH, RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR], 4 << 20).unwrap();
        let req = NlSocket::open(NETLINK_ROUTE, &[], REQUEST_RCVBUF).unwrap();
        run(&["ip", "link", "add", "lnl0", "type", "veth", "peer", "name", "lnl1"]);
        run(&["ip", "link", "set", "lnl0", "up"]);
        run(&["ip", "addr", "add", "192.0.2.254/24", "dev", "lnl0"]);
        run(&["ip", "addr", "add", "2001:db8::fe/64", "dev", "lnl0", "nodad"]);
        run(&["ip", "neigh", "add", "192.0.2.9", "lladdr", "aa:bb:cc:00:00:09", "dev", "lnl0", "nud", "permanent"]);
        run(&["ip", "neigh", "add", "2001:db8::9", "lladdr", "aa:bb:cc:00:00:0a", "dev", "lnl0", "nud", "permanent"]);

        let links = route_dump_links(&req).await.unwrap();
        let ifindex = links.iter().find(|l| l.name == "lnl0").expect("lnl0 in link dump").ifindex;
        assert!(links.iter().any(|l| l.name == "lo"));

        // Live events: the link, both addresses and both neighbours.
        let (mut link, mut a4, mut a6, mut n4, mut n6) = (false, false, false, false, false);
        let end = Instant::now() + Duration::from_secs(5);
        let mut buf = Vec::new();
        while !(link && a4 && a6 && n4 && n6) {
            let left = end.saturating_duration_since(Instant::now());
            let n = tokio::time::timeout(left, events.recv(&mut buf)).await.expect("route events timeout").unwrap();
            for m in crate::codec::nla::Messages::new(&buf[..n]) {
                match route::parse_message(m.unwrap()).unwrap() {
                    Some(RouteEvent::Link(l)) => link |= l.ifindex == ifindex && l.name == "lnl0",
                    Some(RouteEvent::Addr(a)) => {
                        a4 |= a.ifindex == ifindex && a.addr == ip("192.0.2.254") && a.prefix_len == 24;
                        a6 |= a.ifindex == ifindex && a.addr == ip("2001:db8::fe") && a.prefix_len == 64;
                    }
                    Some(RouteEvent::Neigh(ne)) => {
                        n4 |= ne.ifindex == ifindex && ne.ip == ip("192.0.2.9") && ne.mac == Some(mac("aa:bb:cc:00:00:09")) && ne.state == NUD_PERMANENT && !ne.deleted;
                        n6 |= ne.ifindex == ifindex && ne.ip == ip("2001:db8::9") && ne.mac == Some(mac("aa:bb:cc:00:00:0a"));
                    }
                    None => {}
                }
            }
        }

        let neigh = route_dump_neighbours(&req).await.unwrap();
        assert!(neigh.iter().any(|n| n.ifindex == ifindex && n.ip == ip("192.0.2.9") && n.mac == Some(mac("aa:bb:cc:00:00:09")) && n.state == NUD_PERMANENT), "{neigh:?}");
        assert!(neigh.iter().any(|n| n.ip == ip("2001:db8::9") && n.mac == Some(mac("aa:bb:cc:00:00:0a"))), "{neigh:?}");
        let addrs = route_dump_addrs(&req).await.unwrap();
        assert!(addrs.iter().any(|a| a.ifindex == ifindex && a.addr == ip("192.0.2.254") && a.prefix_len == 24), "{addrs:?}");
        assert!(addrs.iter().any(|a| a.ifindex == ifindex && a.addr == ip("2001:db8::fe")), "{addrs:?}");

        // Deletion is seen as such.
        run(&["ip", "neigh", "del", "192.0.2.9", "dev", "lnl0"]);
        let end = Instant::now() + Duration::from_secs(5);
        'outer: loop {
            let left = end.saturating_duration_since(Instant::now());
            let n = tokio::time::timeout(left, events.recv(&mut buf)).await.expect("delete event timeout").unwrap();
            for m in crate::codec::nla::Messages::new(&buf[..n]) {
                if let Some(RouteEvent::Neigh(ne)) = route::parse_message(m.unwrap()).unwrap() {
                    if ne.deleted && ne.ip == ip("192.0.2.9") {
                        break 'outer;
                    }
                }
            }
        }
        // The veth pair dies with the namespace; remove it anyway.
        run(&["ip", "link", "del", "lnl0"]);
    });
}

#[test]
fn kernel_neighbour_lookup_of_single_addresses() {
    if !kernel_available() {
        return;
    }
    let ns = Netns::new();
    ns.run(|| async {
        let req = NlSocket::open(NETLINK_ROUTE, &[], REQUEST_RCVBUF).unwrap();
        run(&["ip", "link", "add", "lnl0", "type", "veth", "peer", "name", "lnl1"]);
        run(&["ip", "link", "set", "lnl0", "up"]);
        run(&["ip", "addr", "add", "192.0.2.254/24", "dev", "lnl0"]);
        run(&["ip", "neigh", "add", "192.0.2.9", "lladdr", "aa:bb:cc:00:00:09", "dev", "lnl0", "nud", "permanent"]);
        run(&["ip", "neigh", "add", "2001:db8::9", "lladdr", "aa:bb:cc:00:00:0a", "dev", "lnl0", "nud", "permanent"]);
        let ifindex = route_dump_links(&req).await.unwrap().iter().find(|l| l.name == "lnl0").expect("lnl0").ifindex;
        let asks = [(ifindex, ip("192.0.2.9")), (ifindex, ip("192.0.2.99")), (ifindex, ip("2001:db8::9")), (ifindex + 100, ip("192.0.2.9"))];
        let found = route_get_neighbours(&req, &asks).await.unwrap();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.iter().any(|n| n.ip == ip("192.0.2.9") && n.mac == Some(mac("aa:bb:cc:00:00:09")) && n.ifindex == ifindex));
        assert!(found.iter().any(|n| n.ip == ip("2001:db8::9") && n.mac == Some(mac("aa:bb:cc:00:00:0a"))));
        // The socket is clean afterwards: a dump on it still works.
        assert!(route_dump_neighbours(&req).await.unwrap().len() >= 2);
        run(&["ip", "link", "del", "lnl0"]);
    });
}

#[test]
fn kernel_request_without_runtime_is_an_error() {
    // Not root-only: opening outside tokio must fail cleanly, not panic.
    assert!(NlSocket::open(NETLINK_ROUTE, &[], 0).is_err());
}

#[test]
fn kernel_conntrack_overrun_is_reported() {
    if !kernel_available() {
        return;
    }
    let ns = Netns::new();
    ns.run(|| async {
        nft_file(TABLE);
        // The default buffer, and nobody reading while 2000 events arrive:
        // the queue must overflow, and the next recv must say so.
        let events = NlSocket::open(NETLINK_NETFILTER, &[NFNLGRP_CONNTRACK_NEW], 0).unwrap();
        let path = std::env::temp_dir().join(format!("leash-nl-overrun-{}", std::process::id()));
        let text: String = (0..2000u32)
            .map(|i| format!("-I -s 10.2.{}.{} -d 198.51.100.1 -p udp --sport 4000 --dport 53 -t 120\n", i >> 8, i & 0xff))
            .collect();
        std::fs::write(&path, text).unwrap();
        run(&["conntrack", "-R", &path.to_string_lossy()]);
        let _ = std::fs::remove_file(&path);
        let mut buf = Vec::new();
        let mut got = 0;
        loop {
            match tokio::time::timeout(Duration::from_secs(2), events.recv(&mut buf)).await {
                Ok(Ok(_)) => got += 1,
                Ok(Err(RecvError::Overrun)) => break,
                other => panic!("expected Overrun after {got} events, got {other:?}"),
            }
        }
        println!("overrun reported after {got} queued events (default buffer)");
    });
}

/// A child process killed when the value goes.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A DNS query for `name` A, id 0x4242.
fn dns_query(name: &str) -> Vec<u8> {
    let mut q = vec![0x42, 0x42, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for l in name.split('.') {
        q.push(l.len() as u8);
        q.extend_from_slice(l.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

#[test]
fn kernel_nflog_bind_delivers_dns_answers_at_once() {
    if !kernel_available() {
        return;
    }
    let ns = Netns::new();
    ns.run(|| async {
        run(&["ip", "link", "set", "lo", "up"]);
        nft_file("table inet T {\n chain out {\n type filter hook output priority 0;\n udp sport 53 ct direction reply log prefix \"dns\" group 5335\n }\n}\n");
        let sock = NlSocket::open(NETLINK_NETFILTER, &[], REQUEST_RCVBUF).unwrap();
        assert!(nflog_bind(&sock, 5335).await.unwrap(), "this kernel attaches conntrack entries to NFLOG packets");
        // The kernel gives a group one listener: a second bind is refused clearly.
        let other = NlSocket::open(NETLINK_NETFILTER, &[], 0).unwrap();
        let err = nflog_bind(&other, 5335).await.unwrap_err();
        assert!(matches!(err, NlError::NflogGroupTaken { group: 5335, .. }), "{err:?}");
        assert!(err.to_string().contains("already bound"), "{err}");
        // Binding the same group again on the same socket is refused too.
        assert!(matches!(nflog_bind(&sock, 5335).await, Err(NlError::NflogGroupTaken { .. })));

        let _dnsmasq = Child(
            Command::new("dnsmasq")
                .args([
                    "--no-daemon", "--no-resolv", "--no-hosts", "--pid-file", "--bind-interfaces",
                    "--listen-address=127.0.0.1", "--host-record=tracking.example.com,203.0.113.7",
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("spawn dnsmasq"),
        );
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        // dnsmasq needs a moment to listen: retry the query until it answers.
        let mut answered = None;
        for _ in 0..50 {
            udp.send_to(&dns_query("tracking.example.com"), "127.0.0.1:53").unwrap();
            let mut buf = [0u8; 512];
            if udp.recv(&mut buf).is_ok() {
                answered = Some(Instant::now());
                break;
            }
        }
        let answered = answered.expect("dnsmasq never answered");

        let mut buf = Vec::new();
        let pkt = loop {
            let n = tokio::time::timeout(Duration::from_secs(3), sock.recv(&mut buf)).await.expect("no NFLOG packet").unwrap();
            let found = crate::codec::nla::Messages::new(&buf[..n])
                .filter_map(|m| m.ok())
                .filter_map(|m| crate::codec::nflog::parse_message(m).ok().flatten())
                .filter_map(|p| crate::codec::dns::parse_packet(p.payload).ok().map(|a| ((p.prefix.map(str::to_string), p.ct_info, p.ct_orig), a)))
                .find(|(_, a)| !a.records.is_empty());
            if let Some(f) = found {
                break f;
            }
        };
        // Queue threshold 1: no waiting for the kernel's 1 s flush timer.
        assert!(answered.elapsed() < Duration::from_millis(500), "NFLOG took {:?}", answered.elapsed());
        let ((prefix, ct_info, ct_orig), answer) = pkt;
        assert_eq!(prefix.as_deref(), Some("dns"));
        // The answer is the reply of the flow the asker opened to the
        // resolver: NFLOG attaches the entry where the kernel has
        // conntrack's netlink glue (CONFIG_NETFILTER_NETLINK_GLUE_CT; the
        // lab kernel has not), else leash looks it up by the tuple.
        let orig = match ct_orig {
            Some(orig) => {
                assert_eq!(ct_info, Some(crate::codec::nflog::IP_CT_ESTABLISHED_REPLY));
                orig
            }
            None => {
                let req = NlSocket::open(NETLINK_NETFILTER, &[], REQUEST_RCVBUF).unwrap();
                let entry = super::socket::conntrack_get_many(&req, &[crate::names::trust::asked_flow(&answer)]).await.unwrap().pop().flatten();
                entry.expect("the query's conntrack entry").orig
            }
        };
        assert_eq!((orig.src, orig.dst, orig.proto, orig.dport), (ip("127.0.0.1"), ip("127.0.0.1"), 17, 53));
        assert_eq!(orig.sport, udp.local_addr().unwrap().port());
        // A flow nobody opened is not found.
        let req = NlSocket::open(NETLINK_NETFILTER, &[], REQUEST_RCVBUF).unwrap();
        let nobody = crate::codec::conntrack::Flow { sport: 1, ..orig };
        assert!(super::socket::conntrack_get_many(&req, &[nobody]).await.unwrap().pop().flatten().is_none());
        assert_eq!(answer.qname, "tracking.example.com");
        assert_eq!((answer.client, answer.server), (ip("127.0.0.1"), ip("127.0.0.1")));
        assert_eq!(answer.records[0].addr, ip("203.0.113.7"));

        // Unbinding frees the group for another socket.
        let unbind = crate::codec::nflog::unbind_request(5335, sock.next_seq());
        sock.request(&unbind).await.unwrap();
        nflog_bind(&other, 5335).await.unwrap();
    });
}

/// Reads nf_tables notifications up to and including the next NEWGEN.
async fn next_transaction(sock: &NlSocket) -> Vec<NftEvent> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    loop {
        let n = tokio::time::timeout(Duration::from_secs(3), sock.recv(&mut buf)).await.expect("no nf_tables notification").unwrap();
        for ev in nft_events::events(&buf[..n]) {
            let ev = ev.unwrap();
            let end = matches!(ev, NftEvent::Generation(_));
            out.push(ev);
            if end {
                return out;
            }
        }
    }
}

#[test]
fn kernel_nft_notifications_name_their_sender_and_gettable_sees_the_table() {
    if !kernel_available() {
        return;
    }
    let ns = Netns::new();
    ns.run(|| async {
        let events = NlSocket::open(NETLINK_NETFILTER, &[NFNLGRP_NFTABLES], 1 << 20).unwrap();
        let req = NlSocket::open(NETLINK_NETFILTER, &[], REQUEST_RCVBUF).unwrap();
        assert_eq!(nft_get_table(&req, 1, "T").await.unwrap(), None, "no table yet");
        nft_file(TABLE);
        next_transaction(&events).await;
        let t = nft_get_table(&req, 1, "T").await.unwrap().expect("table T");
        assert_eq!((t.name.as_str(), t.dormant()), ("T", false));
        // Four sets and one chain.
        assert_eq!(t.used, 5, "{t:?}");

        // Our own element batch: every notification carries our socket's
        // port, and its NEWGEN the committing thread's id (task_pid_nr: the
        // pid only on a process's main thread; this test runs on another).
        let mut b = ElemBatch::new("T");
        b.add_to("qmac", &Elem::QuarantineMac(mac("aa:bb:cc:dd:ee:ff")), Some(Duration::from_secs(60)));
        nft_apply(&req, &b).await.unwrap();
        let tx = next_transaction(&events).await;
        let NftEvent::Change(c) = &tx[0] else { panic!("{tx:?}") };
        assert_eq!((c.object, c.new, c.table.as_str(), c.name.as_deref()), (Object::SetElems, true, "T", Some("qmac")));
        assert_eq!(c.port, req.port_id(), "nlmsg_pid is the requesting socket's port");
        let NftEvent::Generation(g) = tx.last().unwrap() else { panic!() };
        // SAFETY: gettid takes no arguments and cannot fail.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) } as u32;
        assert_ne!(tid, std::process::id());
        assert_eq!((g.port, g.pid), (req.port_id(), Some(tid)));
        assert_eq!(g.id & 0xffff, u32::from(c.gen16));

        // Someone else's nft: its port, and its pid in NEWGEN.
        let child = Command::new("nft").args(["delete", "table", "inet", "T"]).spawn().unwrap();
        let pid = child.id();
        assert!(child.wait_with_output().unwrap().status.success());
        let tx = next_transaction(&events).await;
        let NftEvent::Generation(g) = tx.last().unwrap() else { panic!() };
        assert_eq!(g.pid, Some(pid), "{tx:?}");
        assert!(tx.iter().any(|e| matches!(e, NftEvent::Change(c) if c.object == Object::Table && !c.new && c.port != req.port_id())));
        assert_eq!(nft_get_table(&req, 1, "T").await.unwrap(), None, "deleted");
    });
}

// ---- NFQUEUE: holding DNS answers ----------------------------------------

/// A DNS answer for `name` A `addr`, id `id`: a plain UDP payload.
fn dns_answer(id: u16, name: &str, addr: [u8; 4]) -> Vec<u8> {
    let mut a = dns_query(name);
    a[..2].copy_from_slice(&id.to_be_bytes());
    a[2..4].copy_from_slice(&[0x81, 0x80]);
    a[6..8].copy_from_slice(&[0, 1]);
    a.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x02, 0x58, 0, 4]);
    a.extend_from_slice(&addr);
    a
}

/// `packet` (IPv4 + UDP, as the queue held it) with its UDP payload
/// replaced: lengths and the IP checksum set again, the UDP checksum left
/// out (0, allowed over IPv4), as a rewrite would do.
fn with_udp4_payload(packet: &[u8], payload: &[u8]) -> Vec<u8> {
    let ihl = usize::from(packet[0] & 15) * 4;
    let mut p = packet[..ihl + 8].to_vec();
    p.extend_from_slice(payload);
    let total = p.len() as u16;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p[10..12].copy_from_slice(&[0, 0]);
    let mut sum: u32 = p[..ihl].chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p[ihl + 4..ihl + 6].copy_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    p[ihl + 6..ihl + 8].copy_from_slice(&[0, 0]);
    p
}

const QUEUE: u16 = 5336;

/// A loopback namespace whose UDP replies from port 53 go to NFQUEUE
/// `QUEUE` with bypass: what leash's table does for answers to the LAN.
fn queue_rules() {
    run(&["ip", "link", "set", "lo", "up"]);
    for tool in ["iptables-nft", "ip6tables-nft"] {
        run(&[tool, "-A", "OUTPUT", "-p", "udp", "--sport", "53", "-j", "NFQUEUE", "--queue-num", &QUEUE.to_string(), "--queue-bypass"]);
    }
}

/// A resolver-side socket on port 53 and a client socket with a short timeout.
fn udp_pair(v6: bool) -> (std::net::UdpSocket, std::net::UdpSocket) {
    let host = if v6 { "[::1]" } else { "127.0.0.1" };
    let server = std::net::UdpSocket::bind(format!("{host}:53")).unwrap();
    let client = std::net::UdpSocket::bind(format!("{host}:0")).unwrap();
    client.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    (server, client)
}

/// The next datagram the client gets, if one comes within its timeout.
fn received(client: &std::net::UdpSocket) -> Option<Vec<u8>> {
    let mut buf = [0u8; 2048];
    client.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
}

/// Reads held packets until `n` have come (or panics after 3 s).
async fn held(k: &super::Kernel, n: usize) -> Vec<super::Held> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while out.len() < n {
        let (h, bad) = tokio::time::timeout(Duration::from_secs(3), k.read_held(&mut buf)).await.expect("no held packet").unwrap();
        assert_eq!(bad, 0);
        out.extend(h);
    }
    out
}

#[test]
fn kernel_nfqueue_holds_answers_until_their_verdict() {
    if !kernel_available() {
        return;
    }
    let ns = Netns::new();
    ns.run(|| async {
        queue_rules();
        let (server, client) = udp_pair(false);
        let to = client.local_addr().unwrap();
        // Nobody bound: --queue-bypass lets answers through.
        let a1 = dns_answer(1, "tracking.example.com", [203, 0, 113, 7]);
        server.send_to(&a1, to).unwrap();
        assert_eq!(received(&client).as_deref(), Some(&a1[..]), "bypass while unbound");

        let mut k = super::Kernel::open(1 << 20).await.unwrap();
        assert!(!k.dns_queue_bound());
        k.bind_dns_queue(QUEUE).await.unwrap();
        assert!(k.dns_queue_bound());
        // Binding it again is a no-op; another socket is refused clearly.
        k.bind_dns_queue(QUEUE).await.unwrap();
        let mut other = super::Kernel::open(1 << 20).await.unwrap();
        let err = other.bind_dns_queue(QUEUE).await.unwrap_err();
        assert!(matches!(err.downcast_ref::<NlError>(), Some(NlError::NfqueueTaken { queue: QUEUE, .. })), "{err:?}");
        assert!(format!("{err:#}").contains("queue 5336"), "{err:#}");
        drop(other);

        // Held: the client gets nothing until the verdict.
        server.send_to(&a1, to).unwrap();
        let h = held(&k, 1).await.pop().unwrap();
        assert_eq!(received(&client), None, "the answer must wait for its verdict");
        assert_eq!(h.prov.hook, Some(3), "output hook");
        assert_eq!((h.packet[0], h.packet.len()), (0x45, 20 + 8 + a1.len()));
        assert_eq!(&h.packet[28..], &a1[..]);
        let answer = h.answer.as_ref().unwrap();
        assert_eq!((answer.qname.as_str(), answer.server_port, answer.client_port), ("tracking.example.com", 53, to.port()));
        assert_eq!(answer.records[0].addr, ip("203.0.113.7"));
        // No conntrack glue in the lab kernel: no entry attached.
        println!("ct attached: {:?} {:?}", h.prov.ct_info, h.prov.ct_orig);
        k.send_verdicts(QUEUE, &[(h.id, None)]).unwrap();
        assert_eq!(received(&client).as_deref(), Some(&a1[..]), "accepted as it was");

        // A verdict with a replacement: a shorter packet (an NXDOMAIN
        // without the answer record) arrives instead.
        let a2 = dns_answer(2, "tracking.example.com", [203, 0, 113, 7]);
        server.send_to(&a2, to).unwrap();
        let h = held(&k, 1).await.pop().unwrap();
        let mut nx = a2[..a2.len() - 16].to_vec();
        nx[3] = 0x83;
        nx[6..8].copy_from_slice(&[0, 0]);
        let replacement = with_udp4_payload(&h.packet, &nx);
        k.send_verdicts(QUEUE, &[(h.id, Some(&replacement))]).unwrap();
        assert_eq!(received(&client).as_deref(), Some(&nx[..]), "the replacement arrives, not the answer");
        assert_eq!(received(&client), None);

        // Several verdicts in one datagram, out of order, one replaced by a longer packet.
        let answers: Vec<Vec<u8>> = (10..13).map(|i| dns_answer(i, "multi.example.com", [198, 51, 100, i as u8])).collect();
        for a in &answers {
            server.send_to(a, to).unwrap();
        }
        let hs = held(&k, 3).await;
        let ids: Vec<u32> = hs.iter().map(|h| h.id).collect();
        assert!(ids.windows(2).all(|w| w[1] > w[0]), "{ids:?}");
        let mut longer = answers[1].clone();
        longer.extend_from_slice(&[0; 100]);
        let bigger = with_udp4_payload(&hs[1].packet, &longer);
        k.send_verdicts(QUEUE, &[(ids[2], None), (ids[0], None), (ids[1], Some(&bigger))]).unwrap();
        let mut got: Vec<Vec<u8>> = (0..3).filter_map(|_| received(&client)).collect();
        got.sort();
        let mut want = vec![answers[0].clone(), longer, answers[2].clone()];
        want.sort();
        assert_eq!(got, want);

        // A verdict for an id the queue does not hold is refused: counted,
        // not fatal, and the kernel still takes the next one in the datagram.
        let a5 = dns_answer(5, "tracking.example.com", [203, 0, 113, 7]);
        server.send_to(&a5, to).unwrap();
        let h = held(&k, 1).await.pop().unwrap();
        k.send_verdicts(QUEUE, &[(ids[0], None), (h.id, None)]).unwrap();
        assert_eq!(received(&client).as_deref(), Some(&a5[..]));
        let mut buf = Vec::new();
        let end = Instant::now() + Duration::from_secs(2);
        while k.dns_queue_stats().refused_verdicts == 0 && Instant::now() < end {
            let _ = tokio::time::timeout(Duration::from_millis(200), k.read_held(&mut buf)).await;
        }
        assert_eq!(k.dns_queue_stats(), super::QueueStats { refused_verdicts: 1, overruns: 0 });
        // A replacement too big for a netlink attribute is an error, and sends nothing.
        assert!(k.send_verdicts(QUEUE, &[(1, Some(&vec![0; crate::codec::nfqueue::MAX_PAYLOAD + 1]))]).is_err());

        // A packet as big as a message can carry comes whole (above the
        // usual 64 KiB receive buffer) and goes on whole.
        let mut huge = dns_answer(4, "big.example.com", [203, 0, 113, 4]);
        huge.resize(65470, 0);
        server.send_to(&huge, to).unwrap();
        let h = held(&k, 1).await.pop().unwrap();
        assert_eq!(h.packet.len(), 28 + huge.len());
        k.send_verdicts(QUEUE, &[(h.id, None)]).unwrap();
        let mut big = vec![0u8; 70000];
        let n = client.recv(&mut big).expect("the big answer");
        assert_eq!(&big[..n], &huge[..]);

        // IPv6 too.
        let (server6, client6) = udp_pair(true);
        let a6 = dns_answer(6, "v6.example.com", [203, 0, 113, 9]);
        server6.send_to(&a6, client6.local_addr().unwrap()).unwrap();
        let h = held(&k, 1).await.pop().unwrap();
        assert_eq!((h.packet[0] >> 4, h.prov.hook), (6, Some(3)));
        assert_eq!(&h.packet[48..], &a6[..]);
        assert_eq!(h.answer.as_ref().unwrap().server, ip("::1"));
        assert_eq!(received(&client6), None);
        k.send_verdicts(QUEUE, &[(h.id, None)]).unwrap();
        assert_eq!(received(&client6).as_deref(), Some(&a6[..]));

        // A packet still held when the socket closes is dropped by the
        // kernel (it flushes the queue with NF_DROP), not passed ...
        server.send_to(&a1, to).unwrap();
        held(&k, 1).await;
        drop(k);
        assert_eq!(received(&client), None, "held at close: dropped");
        // ... and with the queue released, answers pass again (bypass).
        let a3 = dns_answer(3, "tracking.example.com", [203, 0, 113, 7]);
        server.send_to(&a3, to).unwrap();
        assert_eq!(received(&client).as_deref(), Some(&a3[..]), "bypass after close");
    });
}

#[test]
fn kernel_nfqueue_bind_keeps_packets_that_come_during_the_bind() {
    if !kernel_available() {
        return;
    }
    let ns = Netns::new();
    ns.run(|| async {
        queue_rules();
        let (server, client) = udp_pair(false);
        // Room for every answer of the burst (≈ 830 bytes of buffer each).
        nix::sys::socket::setsockopt(&client, nix::sys::socket::sockopt::RcvBufForce, &(4 << 20)).unwrap();
        let to = client.local_addr().unwrap();
        // Answers keep coming while the queue is bound: none may be lost
        // in the bind's exchange (it would stay held for ever).
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sender = {
            let stop = stop.clone();
            let server = server.try_clone().unwrap();
            std::thread::spawn(move || {
                let mut sent = 0u16;
                while !stop.load(Ordering::Relaxed) && sent < 2000 {
                    server.send_to(&dns_answer(sent, "burst.example.com", [192, 0, 2, 1]), to).unwrap();
                    sent += 1;
                    std::thread::sleep(Duration::from_micros(50));
                }
                sent
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        let mut k = super::Kernel::open(1 << 20).await.unwrap();
        k.bind_dns_queue(QUEUE).await.unwrap();
        std::thread::sleep(Duration::from_millis(20));
        stop.store(true, Ordering::Relaxed);
        let sent = sender.join().unwrap();
        // Every held packet gets its verdict; then every answer has arrived.
        let mut buf = Vec::new();
        let mut released = 0;
        while let Ok(r) = tokio::time::timeout(Duration::from_millis(300), k.read_held(&mut buf)).await {
            let (h, bad) = r.unwrap();
            assert_eq!(bad, 0);
            let v: Vec<(u32, Option<&[u8]>)> = h.iter().map(|h| (h.id, None)).collect();
            k.send_verdicts(QUEUE, &v).unwrap();
            released += h.len();
        }
        let mut got = 0;
        let mut b = [0u8; 512];
        client.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        while client.recv(&mut b).is_ok() {
            got += 1;
        }
        println!("{sent} answers sent, {released} held and released, {got} received");
        assert!(released > 0);
        assert_eq!(got, usize::from(sent), "every answer arrived: none stuck in the queue");
    });
}

#[test]
fn kernel_nfqueue_fails_open_when_full_or_undeliverable() {
    if !kernel_available() {
        return;
    }
    let ns = Netns::new();
    ns.run(|| async {
        queue_rules();
        let (server, client) = udp_pair(false);
        let to = client.local_addr().unwrap();
        let answers: Vec<Vec<u8>> = (0..10).map(|i| dns_answer(i, "full.example.com", [192, 0, 2, i as u8])).collect();
        let mut buf = Vec::new();

        // A queue of 4: the other 6 answers pass at once, unheld.
        let sock = NlSocket::open(NETLINK_NETFILTER, &[], 1 << 20).unwrap();
        let (with_ct, early) = nfqueue_bind(&sock, QUEUE, 4).await.unwrap();
        println!("conntrack attached to queued packets: {with_ct}");
        assert!(early.is_empty());
        for a in &answers {
            server.send_to(a, to).unwrap();
        }
        let passed: Vec<Vec<u8>> = std::iter::from_fn(|| received(&client)).collect();
        assert_eq!(passed, answers[4..].to_vec(), "the queue is full after 4");
        let mut ids = Vec::new();
        while ids.len() < 4 {
            let n = tokio::time::timeout(Duration::from_secs(3), sock.recv(&mut buf)).await.expect("held packets").unwrap();
            for m in crate::codec::nla::Messages::new(&buf[..n]) {
                ids.extend(crate::codec::nfqueue::parse_message(m.unwrap()).unwrap().map(|p| p.id));
            }
        }
        let mut v = Vec::new();
        for &id in &ids {
            v.extend(crate::codec::nfqueue::verdict_message(QUEUE, id, crate::codec::nfqueue::NF_ACCEPT, None, id));
        }
        sock.send(&v).unwrap();
        let released: Vec<Vec<u8>> = std::iter::from_fn(|| received(&client)).collect();
        assert_eq!(released, answers[..4].to_vec());
        drop(sock);

        // A receive buffer with room for only a few messages, and nobody
        // reading: what the kernel cannot deliver passes too, and the
        // socket reports the overrun.
        let sock = NlSocket::open(NETLINK_NETFILTER, &[], 1).unwrap();
        nfqueue_bind(&sock, QUEUE, 1024).await.unwrap();
        for a in &answers {
            server.send_to(a, to).unwrap();
        }
        let passed = std::iter::from_fn(|| received(&client)).count();
        assert!(passed > 0, "undeliverable packets pass (fail-open)");
        let mut held = 0;
        let mut overrun = false;
        loop {
            match tokio::time::timeout(Duration::from_millis(300), sock.recv(&mut buf)).await {
                Ok(Ok(n)) => held += crate::codec::nla::Messages::new(&buf[..n]).count(),
                Ok(Err(RecvError::Overrun)) => overrun = true,
                Ok(Err(e)) => panic!("{e}"),
                Err(_) => break,
            }
        }
        println!("minimal receive buffer: {held} held, {passed} passed unheld");
        assert!(overrun, "ENOBUFS reported");
        assert_eq!(held + passed, answers.len());
    });
}
