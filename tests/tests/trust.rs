//! Which DNS answers count (SPEC §2): only replies of a flow the device
//! itself opened to the resolver. Answers forged from the internet — UDP
//! and TCP, to a device's IPv4 and IPv6 address — name nothing and change
//! no verdict; an outside resolver that maps a consented name to a denied
//! address unlocks nothing.

mod common;

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use common::*;
use leash_lab::dns::{build_answer, OUTSIDE_RESOLVER};
use leash_lab::lab::ROUTER_V4;
use leash_lab::netns::in_netns;
use leash_lab::{ip, ip4, ip6, mac, Lab, QType, Zone};

const TELEMETRY: &str = "telemetry.vendor.example";

/// iot quarantines and phone blocks what `telemetry` (a name) or `bad`
/// (BAD4/BAD6) deny; `extra`: more TOML.
fn trust_config(lab: &Lab, extra: &str) -> String {
    let list = lab.dir.join("telemetry.txt");
    std::fs::write(&list, format!("{TELEMETRY}\n")).expect("write list");
    format!(
        r#"[daemon]
mode = "enforce"
lan = ["br-lan"]

[defaults]
profile = "iot"

[profile.iot]
unlisted = "allow"
denied = "quarantine"
deny = ["telemetry", "bad"]

[profile.phone]
unlisted = "allow"
denied = "block"
deny = ["telemetry", "bad"]

[list.telemetry]
files = ["{}"]

[list.bad]
selectors = ["{BAD4}", "{BAD6}"]
{extra}
"#,
        list.display()
    )
}

/// Nothing is quarantined or blocked, and no alert was logged.
fn nothing_decided(lab: &Lab) -> bool {
    SETS.iter().all(|s| lab.set_elements(s).is_empty())
        && !lab.syslog_parsed().iter().any(|l| matches!(l.verb.as_str(), "QUARANTINE" | "BLOCK" | "ALERT"))
}

/// The WAN host `from` (port 53) sends `count` forged answers naming
/// TELEMETRY → `addr` to `to` (ports 40000..), over UDP.
fn forge_udp(lab: &Lab, from: IpAddr, to: IpAddr, addr: IpAddr, count: u16) {
    in_netns(&lab.wan().name, move || {
        let s = UdpSocket::bind(SocketAddr::new(from, 53)).expect("bind port 53 in the WAN");
        for i in 0..count {
            s.send_to(&build_answer(0x4242 + i, TELEMETRY, addr), SocketAddr::new(to, 40000 + i)).expect("send forged answer");
        }
    });
}

/// The WAN host `from` connects from port 53 to `to:port` (a server in the
/// device) and writes a forged DNS-over-TCP answer: TCP packets with
/// source port 53 that no question of the device's ever opened.
fn forge_tcp(lab: &Lab, from: IpAddr, to: IpAddr, port: u16, addr: IpAddr) {
    in_netns(&lab.wan().name, move || {
        use nix::sys::socket::{bind, connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6};
        use std::os::fd::AsRawFd;
        let family = if from.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
        let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).expect("socket");
        setsockopt(&fd, sockopt::ReuseAddr, &true).expect("SO_REUSEADDR");
        // connect() honours the send timeout: a quarantined device fails fast.
        setsockopt(&fd, sockopt::SendTimeout, &nix::sys::time::TimeVal::new(2, 0)).expect("SO_SNDTIMEO");
        let (local, peer) = (SocketAddr::new(from, 53), SocketAddr::new(to, port));
        match (local, peer) {
            (SocketAddr::V4(l), SocketAddr::V4(p)) => {
                bind(fd.as_raw_fd(), &SockaddrIn::from(l)).expect("bind port 53");
                connect(fd.as_raw_fd(), &SockaddrIn::from(p)).expect("connect to the device");
            }
            (SocketAddr::V6(l), SocketAddr::V6(p)) => {
                bind(fd.as_raw_fd(), &SockaddrIn6::from(l)).expect("bind port 53");
                connect(fd.as_raw_fd(), &SockaddrIn6::from(p)).expect("connect to the device");
            }
            _ => panic!("mixed address families"),
        }
        let mut tcp = TcpStream::from(fd);
        let msg = build_answer(0x4343, TELEMETRY, addr);
        let mut framed = (msg.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&msg);
        tcp.write_all(&framed).expect("write forged answer");
        let _ = tcp.flush();
    });
}

/// Forged UDP answers from the internet to both devices on both families:
/// no quarantine (iot), no block (phone), both still reach the "denied"
/// address.
#[test]
fn forged_udp_answers_from_the_internet_change_nothing() {
    let mut lab = lab("trust_udp", 2);
    let _wan = lab.wan_tcp_server(HTTPS);
    let cfg = trust_config(&lab, &device_profile(2, "phone"));
    lab.start_leash(&cfg);
    known_device(&lab, 1);
    known_device(&lab, 2);
    for n in [1, 2] {
        forge_udp(&lab, ip(OUTSIDE_RESOLVER), ip4(n), ip(OK4), 20);
        forge_udp(&lab, ip("2001:db8:ffff::2"), ip6(n), ip(OK6), 20);
    }
    // Leash reads a snooped answer within milliseconds: had any counted,
    // it would have acted by now.
    lab.assert_holds_for(Duration::from_millis(1500), "no decision from forged answers", || nothing_decided(&lab));
    for n in [1, 2] {
        assert_reaches(&lab, n, OK4, HTTPS);
        assert_reaches(&lab, n, OK6, HTTPS);
        let x = lab.leash_json(&["explain", &mac(n), OK4]);
        assert!(x["names"].as_array().is_none_or(|a| a.is_empty()), "a forged answer named {OK4}: {x}");
    }
}

/// The same over TCP: connections from the internet's port 53 to servers
/// in the devices, carrying forged answers.
#[test]
fn forged_tcp_answers_from_the_internet_change_nothing() {
    let mut lab = lab("trust_tcp", 2);
    let _wan = lab.wan_tcp_server(HTTPS);
    let _srv1 = lab.device_tcp_server(1, 5353);
    let _srv2 = lab.device_tcp_server(2, 5353);
    let cfg = trust_config(&lab, &device_profile(2, "phone"));
    lab.start_leash(&cfg);
    known_device(&lab, 1);
    known_device(&lab, 2);
    for n in [1, 2] {
        forge_tcp(&lab, ip(OUTSIDE_RESOLVER), ip4(n), 5353, ip(OK4));
        forge_tcp(&lab, ip("2001:db8:ffff::2"), ip6(n), 5353, ip(OK6));
    }
    lab.assert_holds_for(Duration::from_millis(1500), "no decision from forged TCP answers", || nothing_decided(&lab));
    for n in [1, 2] {
        assert_reaches(&lab, n, OK4, HTTPS);
        assert_reaches(&lab, n, OK6, HTTPS);
    }
}

/// A phone with consent for `ok.example.org` asks an outside resolver that
/// maps the name to the denied BAD4: the deny list still blocks it, and
/// `explain` names the resolver. Another phone with the same consent that
/// asks the router's resolver is let through: its name vouches.
#[test]
fn an_outside_resolver_cannot_unlock_a_denied_address_with_a_consented_name() {
    let mut lab = lab("trust_outside", 3);
    let _wan = lab.wan_tcp_server(HTTPS);
    lab.start_outside_dns(&Zone::new().address("ok.example.org", BAD4));
    lab.start_dns(&Zone::new().address("ok.example.org", BAD4));
    let devices = format!(
        "\n[[device]]\nmac = \"{}\"\nprofile = \"phone\"\nconsent = [\"ok.example.org\"]\n\n[[device]]\nmac = \"{}\"\nprofile = \"phone\"\nconsent = [\"ok.example.org\"]\n",
        mac(2),
        mac(3)
    );
    let cfg = trust_config(&lab, &devices);
    lab.start_leash(&cfg);
    known_device(&lab, 2);
    known_device(&lab, 3);

    assert_eq!(lab.resolve(2, OUTSIDE_RESOLVER, "ok.example.org", QType::A), [ip(BAD4)]);
    lab.wait_until(Duration::from_secs(2), "block_v4 holds device 2 . BAD4 after its outside answer", || lab.set_has("block_v4", &block_elem(2, BAD4)));
    assert_dropped(&lab, 2, BAD4, HTTPS);
    let x = lab.leash_json(&["explain", &mac(2), BAD4]);
    assert_eq!(x["rule"], "list:bad", "{x}");
    assert_eq!(x["names"], serde_json::json!(["ok.example.org"]), "{x}");
    assert_eq!(x["resolvers"], serde_json::json!([OUTSIDE_RESOLVER]), "{x}");
    let d = lab.leash_json(&["destinations", &mac(2)]);
    assert!(d.to_string().contains(OUTSIDE_RESOLVER), "destinations name the resolver: {d}");

    assert_eq!(lab.resolve(3, ROUTER_V4, "ok.example.org", QType::A), [ip(BAD4)]);
    assert_reaches(&lab, 3, BAD4, HTTPS);
    let x = lab.leash_json(&["explain", &mac(3), BAD4]);
    assert_eq!(x["rule"], "consent:ok.example.org", "{x}");
    assert_eq!(x["resolvers"], serde_json::json!(["router"]), "{x}");
    assert!(!lab.set_has("block_v4", &block_elem(3, BAD4)));
}
