//! `dns_bypass` (SPEC §3, §6): a device whose profile blocks bypass gets
//! the router's answer when it asks a WAN resolver directly (redirected in
//! leash's own nat chain, so its names stay visible), cannot reach port 853
//! nor a listed DNS-over-HTTPS endpoint on 443, and every attempt says
//! `rule=dns_bypass`; a device of a profile that allows it is untouched;
//! one that alerts goes through with an `ALERT`.

mod common;

use std::time::Duration;

use common::*;
use leash_lab::dns::OUTSIDE_RESOLVER;
use leash_lab::{ip, mac, Lab, LogLine, QType, Zone, PRI_NOTICE, PRI_WARNING};

const NAME: &str = "where.bypass.example";
/// The router's resolver says OK4, the outside one (198.51.100.20) BAD4:
/// an answer tells who gave it.
const ROUTER_SAYS: &str = OK4;
const OUTSIDE_SAYS: &str = BAD4;
/// Listed as a DoH endpoint (in the published "IP # hostname" form); a
/// WAN host of its own, so that its lines are not suppressed by the
/// resolver's (one line per device and destination).
const DOH: &str = "198.51.100.53";
const DOT: u16 = 853;
/// An IPv6 DoH endpoint, and an IPv6 resolver in the WAN (both cloud hosts).
const DOH6: &str = BAD6;
const RESOLVER6: &str = OK6;

/// Device 1: profile `strict` (dns_bypass = "block"); device 2: `open`
/// ("allow"); device 3: `watched` ("alert"). Nothing is denied, so that
/// every drop is the bypass rules' doing.
fn bypass_config(lab: &Lab) -> String {
    let list = lab.dir.join("doh-ipv4.txt");
    std::fs::write(&list, format!("# DoH endpoints, published form\n{DOH} # doh.bypass.example\n192.0.2.200/32 # unused.example\n{DOH6} # doh6.bypass.example\n")).expect("write DoH list");
    format!(
        r#"[daemon]
mode = "enforce"
lan = ["br-lan"]

[defaults]
profile = "open"

[profile.open]
unlisted = "allow"
dns_bypass = "allow"
dns_bypass_lists = ["doh"]

[profile.strict]
unlisted = "allow"
dns_bypass = "block"
dns_bypass_lists = ["doh"]

[profile.watched]
unlisted = "allow"
dns_bypass = "alert"
dns_bypass_lists = ["doh"]

[list.doh]
files = ["{}"]
{}{}{}"#,
        list.display(),
        device_profile(1, "strict"),
        device_profile(2, "open"),
        device_profile(3, "watched"),
    )
}

/// A lab with devices 1..=n, both resolvers and servers on 443 and 853 in the WAN.
fn bypass_lab(name: &str, n: u8) -> (Lab, Vec<leash_lab::netns::TcpServer>) {
    let mut lab = lab(name, n);
    lab.wan().ip(&["addr", "add", &format!("{DOH}/32"), "dev", "lo"]);
    let servers = vec![lab.wan_tcp_server(HTTPS), lab.wan_tcp_server(DOT)];
    lab.start_dns(&Zone::new().address(NAME, ROUTER_SAYS));
    lab.start_outside_dns(&Zone::new().address(NAME, OUTSIDE_SAYS));
    let cfg = bypass_config(&lab);
    lab.start_leash(&cfg);
    for d in 1..=n {
        known_device(&lab, d);
    }
    (lab, servers)
}

fn bypass_lines(lab: &Lab, n: u8) -> Vec<LogLine> {
    lab.syslog_parsed().into_iter().filter(|l| l.get("rule") == Some("dns_bypass") && l.get("device") == Some(mac(n).as_str())).collect()
}

#[test]
fn block_profile_is_answered_by_the_router_and_cut_on_853_and_doh() {
    let (lab, _servers) = bypass_lab("bypass_block", 2);
    lab.wait_until(Duration::from_secs(5), "bypass_mac holds device 1 only", || lab.set_has("bypass_mac", &mac(1)) && !lab.set_has("bypass_mac", &mac(2)));
    assert!(lab.set_has("doh_v4", DOH), "doh_v4: {:?}", lab.set_elements("doh_v4"));

    // Asking the outside resolver directly: the router's resolver answers.
    assert_eq!(lab.resolve(1, OUTSIDE_RESOLVER, NAME, QType::A), [ip(ROUTER_SAYS)], "the router's answer, not the outside one");
    let l = lab.wait_syslog_verb("BLOCK", &[("device", &mac(1)), ("dst", OUTSIDE_RESOLVER), ("dport", "53"), ("rule", "dns_bypass"), ("profile", "strict"), ("action", "redirect")]);
    assert_eq!(l.pri, PRI_WARNING, "{l:?}");
    // ... and names the destination, as the router's resolver (it may grant consent).
    assert_reaches(&lab, 1, ROUTER_SAYS, HTTPS);
    lab.wait_until(Duration::from_secs(5), "destinations name the redirected answer's address", || {
        lab.leash_json(&["destinations", &mac(1)]).to_string().contains(NAME)
    });
    let x = lab.leash_json(&["explain", &mac(1), ROUTER_SAYS]);
    assert_eq!(x["names"], serde_json::json!([NAME]), "{x}");
    assert_eq!(x["resolvers"], serde_json::json!(["router"]), "{x}");
    // The redirected query is no destination of its own: nothing blocked.
    assert!(lab.set_elements("block_v4").is_empty(), "{:?}", lab.set_elements("block_v4"));

    // DNS over TLS and a listed DoH endpoint are cut, and say so.
    assert_dropped(&lab, 1, ROUTER_SAYS, DOT);
    lab.wait_syslog_verb("BLOCK", &[("device", &mac(1)), ("dst", ROUTER_SAYS), ("proto", "tcp"), ("dport", "853"), ("rule", "dns_bypass")]);
    assert_dropped(&lab, 1, DOH, HTTPS);
    lab.wait_syslog_verb("BLOCK", &[("device", &mac(1)), ("dst", DOH), ("dport", "443"), ("rule", "dns_bypass")]);
    // 443 elsewhere is ordinary traffic.
    assert_reaches(&lab, 1, OUTSIDE_SAYS, HTTPS);

    // Device 2's profile allows bypass: untouched, and not a line about it.
    assert_eq!(lab.resolve(2, OUTSIDE_RESOLVER, NAME, QType::A), [ip(OUTSIDE_SAYS)], "the outside resolver's own answer");
    assert_reaches(&lab, 2, ROUTER_SAYS, DOT);
    assert_reaches(&lab, 2, DOH, HTTPS);
    assert!(bypass_lines(&lab, 2).is_empty(), "{:?}", bypass_lines(&lab, 2));
    // Repeats are suppressed per device and destination.
    assert_dropped(&lab, 1, DOH, HTTPS);
    assert_eq!(lab.resolve(1, OUTSIDE_RESOLVER, NAME, QType::A), [ip(ROUTER_SAYS)]);
    let n = bypass_lines(&lab, 1).len();
    assert_eq!(n, 3, "one line per destination: {:?}", bypass_lines(&lab, 1));
}

#[test]
fn alert_profile_goes_through_with_an_alert() {
    let (lab, _servers) = bypass_lab("bypass_alert", 3);
    assert_eq!(lab.resolve(3, OUTSIDE_RESOLVER, NAME, QType::A), [ip(OUTSIDE_SAYS)], "not redirected");
    let l = lab.wait_syslog_verb("ALERT", &[("device", &mac(3)), ("dst", OUTSIDE_RESOLVER), ("proto", "udp"), ("dport", "53"), ("rule", "dns_bypass"), ("profile", "watched")]);
    assert_eq!(l.pri, PRI_NOTICE, "{l:?}");
    assert_reaches(&lab, 3, OUTSIDE_SAYS, DOT);
    lab.wait_syslog_verb("ALERT", &[("device", &mac(3)), ("dst", OUTSIDE_SAYS), ("dport", "853"), ("rule", "dns_bypass")]);
    assert!(!lab.set_has("bypass_mac", &mac(3)));
    assert!(lab.set_elements("block_v4").is_empty());
}

/// A reload that moves device 1 out of the blocking profile takes its
/// element away (and the DoH set with the chains once no profile blocks).
#[test]
fn reload_out_of_block_restores_direct_dns() {
    let (mut lab, _servers) = bypass_lab("bypass_reload", 1);
    lab.wait_until(Duration::from_secs(5), "bypass_mac holds device 1", || lab.set_has("bypass_mac", &mac(1)));
    assert_eq!(lab.resolve(1, OUTSIDE_RESOLVER, NAME, QType::A), [ip(ROUTER_SAYS)]);
    let cfg = bypass_config(&lab).replace("profile = \"strict\"", "profile = \"open\"").replace("dns_bypass = \"block\"", "dns_bypass = \"alert\"");
    lab.write_config(&cfg);
    lab.leash_ok(&["reload"]);
    lab.wait_until(Duration::from_secs(5), "the bypass sets are gone with the last blocking profile", || {
        lab.nft_json().is_some_and(|t| !t.to_string().contains("bypass_mac"))
    });
    assert_eq!(lab.resolve(1, OUTSIDE_RESOLVER, NAME, QType::A), [ip(OUTSIDE_SAYS)], "direct again");
    assert_reaches(&lab, 1, DOH, HTTPS);
    assert!(!lab.daemon_log().contains("refused an element update"), "{}", lab.daemon_log());
}

/// Someone empties `bypass_mac` (a hand edit): leash rebuilds the table
/// with the element, which is derived from the configuration, not a
/// persisted decision, and the redirect works again.
#[test]
fn flushed_bypass_set_is_rebuilt_with_its_members() {
    let (lab, _servers) = bypass_lab("bypass_heal", 1);
    lab.wait_until(Duration::from_secs(5), "bypass_mac holds device 1", || lab.set_has("bypass_mac", &mac(1)));
    lab.nft_script("flush set inet leash bypass_mac\n");
    lab.wait_syslog("the table rebuilt after the flush", |l| l.pri == leash_lab::PRI_ERR && l.msg.contains("bypass_mac"));
    lab.wait_until(Duration::from_secs(5), "bypass_mac holds device 1 again", || lab.set_has("bypass_mac", &mac(1)));
    assert!(lab.set_has("doh_v4", DOH));
    assert_eq!(lab.resolve(1, OUTSIDE_RESOLVER, NAME, QType::A), [ip(ROUTER_SAYS)]);
}

/// The same over IPv6: a query to a WAN resolver's IPv6 address is
/// answered by the router's resolver on fd00:7::1, an IPv6 DoH endpoint is
/// cut; the allowed device gets the WAN resolver's answer and the endpoint.
#[test]
fn block_profile_over_ipv6() {
    let (lab, _servers) = bypass_lab("bypass_v6", 2);
    let _wan6 = leash_lab::dns::Resolver::start(&lab.wan().name, &[ip(RESOLVER6)], &lab.dir, "dnsmasq-wan6", &Zone::new().address(NAME, OUTSIDE_SAYS));
    assert!(lab.set_has("doh_v6", DOH6), "doh_v6: {:?}", lab.set_elements("doh_v6"));
    assert_eq!(lab.resolve(1, RESOLVER6, NAME, QType::A), [ip(ROUTER_SAYS)], "the router's answer over IPv6");
    lab.wait_syslog_verb("BLOCK", &[("device", &mac(1)), ("dst", RESOLVER6), ("dport", "53"), ("rule", "dns_bypass"), ("action", "redirect")]);
    assert_dropped(&lab, 1, DOH6, HTTPS);
    lab.wait_syslog_verb("BLOCK", &[("device", &mac(1)), ("dst", DOH6), ("dport", "443"), ("rule", "dns_bypass")]);
    assert_eq!(lab.resolve(2, RESOLVER6, NAME, QType::A), [ip(OUTSIDE_SAYS)]);
    assert_reaches(&lab, 2, DOH6, HTTPS);
}
