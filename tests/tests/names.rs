//! Destinations by name: DNS answers crossing the router are judged when
//! they pass (SPEC §2 "A verdict need not wait for the connection"), deny
//! lists from files (§3), CNAME chains and consent by name, IPv6, answers of
//! outside resolvers, a 100 000-domain list, country/ASN selectors from
//! `.mmdb` databases, `leash destinations` (§4) and `upload_alert`.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use leash_lab::lab::{ROUTER_V4, ROUTER_V6};
use leash_lab::{ip, ip4, ip6, mac, Lab, QType, Zone, PRI_NOTICE, PRI_WARNING};
use serde_json::Value;

const US4: &str = "198.51.100.20";
const PORT: u16 = 8443;

/// One profile `iot` for every device: `unlisted`, `denied` and the list
/// `bad` (its body: `files = [...]` or `selectors = [...]`), plus extra
/// top-level TOML (`[[device]]`, `[geoip]`, more lists) and profile keys.
fn names_config(unlisted: &str, denied: &str, bad_list: &str, profile_extra: &str, extra: &str) -> String {
    format!(
        r#"[daemon]
mode = "enforce"
lan = ["br-lan"]
alert_interval = "1h"

[defaults]
profile = "iot"

[profile.iot]
unlisted = "{unlisted}"
denied = "{denied}"
deny = ["bad"]
{profile_extra}

[list.bad]
{bad_list}
{extra}
"#
    )
}

/// Writes the list file `<labdir>/<name>` and returns its `files = [...]` line.
fn list_file(lab: &Lab, name: &str, body: &str) -> String {
    let path = lab.dir.join(name);
    std::fs::write(&path, body).expect("write list file");
    format!("files = [\"{}\"]", path.display())
}

/// What a device got done in `dur` against addr:port: whether its connect
/// succeeded (1 s timeout), and the bytes it managed to write.
#[derive(Debug)]
struct Attempt {
    connected: bool,
    /// Shown in failure messages.
    #[allow(dead_code)]
    written: u64,
}

/// Device n connects to addr:port and writes 16 KiB chunks as fast as it can for `dur`.
fn connect_and_write(lab: &Lab, n: u8, addr: IpAddr, port: u16, dur: Duration) -> Attempt {
    lab.dev(n).run(move || {
        let end = Instant::now() + dur;
        let Ok(mut s) = TcpStream::connect_timeout(&SocketAddr::new(addr, port), Duration::from_secs(1)) else {
            return Attempt { connected: false, written: 0 };
        };
        let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
        let chunk = vec![0x5au8; 16 * 1024];
        let mut written = 0;
        while Instant::now() < end {
            match s.write(&chunk) {
                Ok(k) => written += k as u64,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
        Attempt { connected: true, written }
    })
}

/// Sends `up` bytes and reads every echoed byte back (the WAN server echoes).
fn exchange(s: &mut TcpStream, up: usize) {
    let data = vec![0x42u8; up];
    s.write_all(&data).expect("write to the server");
    let mut back = vec![0u8; up];
    s.read_exact(&mut back).expect("read the echo back");
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// (a) A denied name's answer quarantines the device as it passes: the
/// device's very first packet to the address is dropped already.
#[test]
fn denied_name_quarantines_before_connect() {
    let mut lab = lab("dns_quarantine", 1);
    let wan = lab.wan_tcp_server(PORT);
    let bad = list_file(&lab, "bad.txt", "# vendor telemetry\ntracking.example.com\n");
    lab.start_dns(&Zone::new().address("tracking.example.com", BAD4).address("ok.example.org", OK4));
    lab.start_leash(&names_config("allow", "quarantine", &bad, "", ""));
    known_device(&lab, 1);
    assert!(lab.set_elements("quarantine_mac").is_empty());

    assert_eq!(lab.resolve(1, ROUTER_V4, "tracking.example.com", QType::A), [ip(BAD4)]);
    lab.wait_until(Duration::from_secs(1), "quarantine_mac holds device 1 right after the answer", || lab.set_has("quarantine_mac", &mac(1)));

    let a = connect_and_write(&lab, 1, ip(BAD4), PORT, Duration::from_secs(1));
    lab.assert_holds_for(Duration::from_millis(500), "the WAN server got nothing from device 1", || {
        wan.bytes_from(ip4(1)) == 0 && wan.accepted() == 0
    });
    assert!(!a.connected, "the handshake must not complete: {a:?}\n{}", lab.diagnostics());

    let l = lab.wait_syslog_verb("QUARANTINE", &[("device", &mac(1)), ("dst", BAD4), ("host", "tracking.example.com"), ("rule", "list:bad"), ("profile", "iot")]);
    assert_eq!(l.pri, PRI_WARNING, "{l:?}");
    assert!(l.msg.starts_with(&format!("QUARANTINE device={} ", mac(1))), "{l:?}");
    assert!(lab.set_has("quarantine_v4", &ip4(1).to_string()), "inbound drop for the device's address\n{}", lab.diagnostics());
    assert_eq!(lab.device_report(&mac(1)).expect("device 1 listed")["state"], "quarantined");
    // Quarantined means no internet at all; the router's resolver still answers.
    assert_eq!(lab.resolve(1, ROUTER_V4, "ok.example.org", QType::A), [ip(OK4)]);
    assert_dropped(&lab, 1, OK4, PORT);
}

/// (a, new devices) A device's very first DNS answer is judged too, before
/// leash has read the neighbour entry the router made for it: the router
/// could only send the answer once it knew the device's MAC. Eight new
/// devices each resolve the denied name as their first act, then connect.
#[test]
fn new_devices_first_answer_is_judged() {
    let mut lab = lab("dns_new_device", 8);
    let wan = lab.wan_tcp_server(PORT);
    let bad = list_file(&lab, "bad.txt", "tracking.example.com\n");
    lab.start_dns(&Zone::new().address("tracking.example.com", BAD4));
    lab.start_leash(&names_config("allow", "block", &bad, "", ""));

    for n in 1..=8 {
        assert_eq!(lab.resolve(n, ROUTER_V4, "tracking.example.com", QType::A), [ip(BAD4)]);
    }
    let mut missing = Vec::new();
    leash_lab::wait::poll_until(Duration::from_secs(2), || {
        let elems = lab.set_elements("block_v4");
        missing = (1..=8u8).filter(|n| !elems.contains(&block_elem(*n, BAD4))).collect::<Vec<_>>();
        missing.is_empty()
    });
    // What the devices then get through, for the failure message.
    let mut reached = Vec::new();
    for n in 1..=8u8 {
        if connect_and_write(&lab, n, ip(BAD4), PORT, Duration::from_millis(300)).connected {
            reached.push(n);
        }
    }
    let counters = lab.leash_json(&["status"])["counters"].clone();
    assert!(
        missing.is_empty() && reached.is_empty(),
        "devices whose first answer was not judged (no block_v4 element): {missing:?}; devices that then reached {BAD4}: {reached:?} \
         (server got {} bytes from 192.168.7.11); dns_answers={} dns_unknown_client={}\n{}",
        wan.bytes_from(ip4(1)),
        counters["dns_answers"],
        counters["dns_unknown_client"],
        lab.diagnostics()
    );
}

/// (b) A name consented by its domain is allowed even when the address
/// came through a CNAME to another domain, in a profile that blocks
/// everything unlisted; a name not consented is blocked when its answer passes.
#[test]
fn consented_name_through_cname_chain_is_allowed() {
    let mut lab = lab("dns_cname", 1);
    let wan = lab.wan_tcp_server(PORT);
    let dev = format!("\n[[device]]\nmac = \"{}\"\nname = \"tv\"\nconsent = [\"example.net\"]\n", mac(1));
    // dnsmasq serves a --cname only towards a name it holds as a host record.
    lab.start_dns(&Zone::new().cname("www.example.net", "edge.example.org").host("edge.example.org", OK4).address("other.example.org", US4));
    lab.start_leash(&names_config("block", "block", "selectors = []", "", &dev));
    known_device(&lab, 1);

    assert_eq!(lab.resolve(1, ROUTER_V4, "www.example.net", QType::A), [ip(OK4)]);
    let mut s = lab.tcp_connect(1, ip(OK4), PORT, Duration::from_secs(2)).unwrap_or_else(|e| panic!("device 1 → {OK4}: {e}\n{}", lab.diagnostics()));
    exchange(&mut s, 4000);
    lab.wait_until(Duration::from_secs(5), "server received 4000 bytes", || wan.bytes_from(ip4(1)) == 4000);
    let e = lab.leash_json(&["explain", &mac(1), OK4]);
    assert_eq!((e["verdict"].as_str(), e["rule"].as_str()), (Some("allow"), Some("consent:example.net")), "{e}");
    assert!(strings(&e["names"]).contains(&"www.example.net".to_string()), "{e}");
    // Still flowing after leash saw the connection.
    exchange(&mut s, 1000);
    assert!(!lab.set_has("block_v4", &block_elem(1, OK4)));

    // Not consented: blocked as the answer passes, before any packet.
    assert_eq!(lab.resolve(1, ROUTER_V4, "other.example.org", QType::A), [ip(US4)]);
    lab.wait_until(Duration::from_secs(1), "block_v4 holds device 1 . 198.51.100.20 right after the answer", || {
        lab.set_has("block_v4", &block_elem(1, US4))
    });
    let l = lab.wait_syslog_verb("BLOCK", &[("device", &mac(1)), ("dst", US4), ("host", "other.example.org"), ("rule", "unlisted")]);
    assert_eq!(l.pri, PRI_WARNING, "{l:?}");
    assert_dropped(&lab, 1, US4, PORT);
    assert_eq!(wan.bytes_from(ip4(1)), 5000);
}

/// (c) AAAA answers over IPv6 to the router's resolver block the IPv6 address.
#[test]
fn denied_name_aaaa_over_ipv6_blocks_before_connect() {
    let mut lab = lab("dns_aaaa", 1);
    let wan = lab.wan_tcp_server(PORT);
    let bad = list_file(&lab, "bad.txt", "tracking.example.com\n");
    lab.start_dns(&Zone::new().address("v6.tracking.example.com", BAD6));
    lab.start_leash(&names_config("allow", "block", &bad, "", ""));
    known_device(&lab, 1);

    assert_eq!(lab.resolve(1, ROUTER_V6, "v6.tracking.example.com", QType::Aaaa), [ip(BAD6)]);
    lab.wait_until(Duration::from_secs(1), "block_v6 holds device 1 . 2001:db8:bad::7 right after the answer", || {
        lab.set_has("block_v6", &block_elem(1, BAD6))
    });
    let l = lab.wait_syslog_verb("BLOCK", &[("device", &mac(1)), ("dst", BAD6), ("host", "v6.tracking.example.com"), ("rule", "list:bad")]);
    assert_eq!(l.pri, PRI_WARNING, "{l:?}");
    let a = connect_and_write(&lab, 1, ip(BAD6), PORT, Duration::from_secs(1));
    assert!(!a.connected, "{a:?}");
    assert_eq!(wan.bytes_from(ip6(1)), 0);
    assert_reaches(&lab, 1, OK6, PORT);
    assert!(lab.set_elements("quarantine_mac").is_empty(), "a block is not a quarantine");
}

/// (d) A device that asks an outside resolver directly (8.8.8.8-style): the
/// forwarded answer is judged the same.
#[test]
fn outside_resolver_answer_is_judged_too() {
    let mut lab = lab("dns_outside", 1);
    let _wan = lab.wan_tcp_server(PORT);
    let bad = list_file(&lab, "bad.txt", "||tracking.example.com^\n");
    lab.start_outside_dns(&Zone::new().address("tracking.example.com", BAD4));
    lab.start_leash(&names_config("allow", "block", &bad, "", ""));
    known_device(&lab, 1);

    assert_eq!(lab.resolve(1, leash_lab::dns::OUTSIDE_RESOLVER, "eu.tracking.example.com", QType::A), [ip(BAD4)]);
    lab.wait_until(Duration::from_secs(1), "block_v4 holds device 1 . 203.0.113.7 right after the answer", || {
        lab.set_has("block_v4", &block_elem(1, BAD4))
    });
    lab.wait_syslog_verb("BLOCK", &[("device", &mac(1)), ("dst", BAD4), ("host", "eu.tracking.example.com"), ("rule", "list:bad")]);
    assert_dropped(&lab, 1, BAD4, PORT);
    assert_reaches(&lab, 1, OK4, PORT);
    let s = lab.leash_json(&["status"]);
    assert!(s["counters"]["dns_answers"].as_u64().unwrap_or(0) >= 1, "{s}");
}

/// Name i of the big list.
fn big_name(i: usize) -> String {
    format!("t{i}.tracker{}.example", i % 100)
}

/// (e) A 100 000-domain list in the three line forms: all counted by
/// `leash check`, and a name from its middle is blocked at DNS time.
#[test]
fn list_of_100k_domains_loads_and_blocks() {
    const N: usize = 100_000;
    let mut lab = lab("dns_biglist", 1);
    let _wan = lab.wan_tcp_server(PORT);
    let mut body = String::with_capacity(N * 32);
    body.push_str("# generated: plain, hosts-file and adblock lines\n! adblock comment\n");
    for i in 0..N {
        let n = big_name(i);
        match i % 3 {
            0 => body.push_str(&format!("{n}\n")),
            1 => body.push_str(&format!("0.0.0.0 {n}\n")),
            _ => body.push_str(&format!("||{n}^\n")),
        }
    }
    let bad = list_file(&lab, "big.txt", &body);
    let config = names_config("allow", "block", &bad, "", "");
    let path = lab.write_config(&config);
    let out = lab.leash_offline(&["check", "--config", path.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "leash check failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let j: Value = serde_json::from_slice(&out.stdout).expect("check --json is JSON");
    assert_eq!(j["lists"]["bad"]["entries"].as_u64(), Some(N as u64), "{}", j["lists"]);
    assert_eq!(j["lists"]["bad"]["bad_lines"].as_u64(), Some(0), "{}", j["lists"]);

    let middle = big_name(N / 2);
    let also = big_name(N / 2 + 1); // the next form of line
    lab.start_dns(&Zone::new().address(&middle, BAD4).address(&also, "203.0.113.8").address("ok.example.org", US4));
    lab.start_leash(&config);
    known_device(&lab, 1);
    assert_eq!(lab.resolve(1, ROUTER_V4, &middle, QType::A), [ip(BAD4)]);
    lab.wait_until(Duration::from_secs(1), "block_v4 holds device 1 . 203.0.113.7 right after the answer", || {
        lab.set_has("block_v4", &block_elem(1, BAD4))
    });
    lab.wait_syslog_verb("BLOCK", &[("device", &mac(1)), ("dst", BAD4), ("host", middle.as_str()), ("rule", "list:bad")]);
    assert_eq!(lab.resolve(1, ROUTER_V4, &also, QType::A), [ip(OK4)]);
    lab.wait_until(Duration::from_secs(1), "block_v4 holds device 1 . 203.0.113.8", || lab.set_has("block_v4", &block_elem(1, OK4)));
    // A name not on the list stays reachable.
    assert_eq!(lab.resolve(1, ROUTER_V4, "ok.example.org", QType::A), [ip(US4)]);
    assert_reaches(&lab, 1, US4, PORT);
    assert!(!lab.set_has("block_v4", &block_elem(1, US4)));
}

/// (f) `country:CN` from the country database, with the ASN in the line,
/// for an address reached without any DNS answer.
#[test]
fn country_selector_from_mmdb_blocks_by_address() {
    let mut lab = lab("geoip", 1);
    let _wan = lab.wan_tcp_server(PORT);
    let out = std::process::Command::new(Lab::example_bin("make_mmdb")).arg(&lab.dir).output().expect("run make_mmdb");
    assert!(out.status.success(), "make_mmdb: {}", String::from_utf8_lossy(&out.stderr));
    let geo = format!(
        "\n[geoip]\ncountry_db = \"{}\"\nasn_db = \"{}\"\n",
        lab.dir.join("country.mmdb").display(),
        lab.dir.join("asn.mmdb").display()
    );
    lab.start_leash(&names_config("allow", "block", "selectors = [\"country:CN\"]", "", &geo));
    known_device(&lab, 1);

    let _ = lab.tcp_connect(1, ip(BAD4), PORT, Duration::from_secs(1));
    let l = lab.wait_syslog_verb("BLOCK", &[("device", &mac(1)), ("dst", BAD4), ("country", "CN"), ("asn", "4808"), ("rule", "list:bad")]);
    assert_eq!(l.pri, PRI_WARNING, "{l:?}");
    assert!(l.msg.contains(&format!(" dst={BAD4} country=CN asn=4808 proto=tcp dport={PORT} rule=list:bad ")), "{l:?}");
    lab.wait_until(Duration::from_secs(5), "block_v4 holds device 1 . 203.0.113.7", || lab.set_has("block_v4", &block_elem(1, BAD4)));
    assert_dropped(&lab, 1, BAD4, PORT);
    // The US neighbour is untouched.
    assert_reaches(&lab, 1, US4, PORT);
    assert_reaches(&lab, 1, US4, PORT);
    assert!(!lab.set_has("block_v4", &block_elem(1, US4)));
    let e = lab.leash_json(&["explain", &mac(1), US4]);
    assert_eq!((e["verdict"].as_str(), e["country"].as_str(), e["asn"].as_u64()), (Some("allow"), Some("US"), Some(64500)), "{e}");
    // IPv6 in the CN range too.
    let _ = lab.tcp_connect(1, ip(BAD6), PORT, Duration::from_secs(1));
    lab.wait_syslog_verb("BLOCK", &[("device", &mac(1)), ("dst", BAD6), ("country", "CN"), ("rule", "list:bad")]);
    lab.wait_until(Duration::from_secs(5), "block_v6 holds device 1 . 2001:db8:bad::7", || lab.set_has("block_v6", &block_elem(1, BAD6)));
}

/// (g) `leash destinations`: the address with the name the device resolved,
/// and the bytes of its closed connection (from conntrack's DESTROY event).
#[test]
fn destinations_list_names_and_bytes() {
    let mut lab = lab("destinations", 1);
    let _wan = lab.wan_tcp_server(PORT);
    lab.start_dns(&Zone::new().address("files.example.org", US4));
    lab.start_leash(&names_config("allow", "block", "selectors = []", "", ""));
    // A closed TCP flow's entry leaves conntrack after TIME_WAIT (120 s by
    // default): shorten it in the router so that the DESTROY event comes soon.
    lab.router().exec(&["sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_timeout_time_wait=1", "net.netfilter.nf_conntrack_tcp_timeout_close=1"]);
    known_device(&lab, 1);

    assert_eq!(lab.resolve(1, ROUTER_V4, "files.example.org", QType::A), [ip(US4)]);
    let mut s = lab.tcp_connect(1, ip(US4), PORT, Duration::from_secs(2)).expect("device 1 → 198.51.100.20");
    exchange(&mut s, 20_000);
    exchange(&mut s, 12_000);
    s.shutdown(Shutdown::Both).unwrap();
    drop(s);

    let flow = ["-p", "tcp", "-s", "192.168.7.11", "-d", US4, "--dport", "8443"];
    let mut rec = Value::Null;
    lab.wait_until(Duration::from_secs(20), "destinations shows 198.51.100.20 with bytes both ways", || {
        // Listing conntrack reaps expired entries (the kernel's GC does the
        // same, later): the DESTROY event follows.
        let _ = lab.conntrack_count(&flow);
        let d = lab.leash_json(&["destinations", &mac(1)]);
        rec = leash_lab::lab::find_object(&d, &|o| o.get("address").and_then(Value::as_str) == Some(US4)).unwrap_or(Value::Null);
        rec["bytes_up"].as_u64().unwrap_or(0) > 0 && rec["bytes_down"].as_u64().unwrap_or(0) > 0
    });
    assert!(strings(&rec["names"]).contains(&"files.example.org".to_string()), "{rec}");
    // conntrack counts IP bytes: at least the payload, plus headers.
    let (up, down) = (rec["bytes_up"].as_u64().unwrap(), rec["bytes_down"].as_u64().unwrap());
    assert!((32_000..200_000).contains(&up), "bytes_up {up}: {rec}");
    assert!((32_000..200_000).contains(&down), "bytes_down {down}: {rec}");
    assert_eq!(rec["verdict"].as_str(), Some("allow"), "{rec}");
    assert!(rec["first_seen"].as_u64().unwrap_or(0) > 0 && rec["last_seen"].as_u64() >= rec["first_seen"].as_u64(), "{rec}");

    // The text form: an aligned table with the same row.
    let text = lab.leash_ok(&["destinations", &mac(1)]);
    let mut lines = text.lines();
    let header = lines.next().expect("header line");
    assert!(header.starts_with("NAMES") && header.contains("ADDRESS") && header.contains("UP") && header.contains("DOWN"), "{text}");
    let row = text.lines().find(|l| l.contains(US4)).unwrap_or_else(|| panic!("no row for {US4}:\n{text}"));
    assert!(row.starts_with("files.example.org"), "{text}");
    for (col, _) in header.match_indices(|c: char| c != ' ').filter(|(i, _)| *i == 0 || header.as_bytes()[i - 1] == b' ' && header.as_bytes()[i - 2] == b' ') {
        let b = row.as_bytes();
        assert!(col < b.len() && b[col] != b' ' && (col == 0 || b[col - 1] == b' '), "column at {col} not aligned:\n{text}");
    }
    assert_eq!(row.find(US4), header.find("ADDRESS"), "{text}");
    assert!(row.contains(&up.to_string()) && row.contains(&down.to_string()), "{text}");
}

/// (h) `upload_alert`: a device sending more than the limit to one
/// unconsented destination is reported while the connection is still open.
#[test]
fn upload_alert_fires_for_a_running_upload() {
    let mut lab = lab("upload_alert", 1);
    let wan = lab.wan_tcp_server(PORT);
    lab.start_leash(&names_config("allow", "block", "selectors = []", "upload_alert = \"1MB\"", ""));
    known_device(&lab, 1);

    let mut s = lab.tcp_connect(1, ip(OK4), PORT, Duration::from_secs(2)).expect("device 1 → 203.0.113.8");
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_read_timeout(None).unwrap();
    // Drain the echo so that the server keeps reading.
    let mut r = s.try_clone().unwrap();
    let drain = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
    });
    s.write_all(&vec![0x33u8; 3_000_000]).expect("upload 3 MB");
    lab.wait_until(Duration::from_secs(10), "server received 3 MB", || wan.bytes_from(ip4(1)) == 3_000_000);

    // leash reads running flows' counters every 10 s.
    let mut found = None;
    lab.wait_until(Duration::from_secs(20), "ALERT rule=upload_alert for device 1 → 203.0.113.8", || {
        found = lab.syslog_parsed().into_iter().find(|l| l.verb == "ALERT" && l.has(&[("device", &mac(1)), ("dst", OK4), ("rule", "upload_alert")]));
        found.is_some()
    });
    let l = found.unwrap();
    assert_eq!(l.pri, PRI_NOTICE, "{l:?}");
    let up: u64 = l.get("bytes_up").and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("bytes_up: {l:?}"));
    assert!(up >= 3_000_000, "bytes_up {up} < 3 MB: {l:?}");
    assert_eq!(l.get("profile"), Some("iot"), "{l:?}");
    // An alert, not a block: the connection still works.
    s.write_all(b"still here").expect("write after the alert");
    lab.wait_until(Duration::from_secs(5), "server received the last bytes", || wan.bytes_from(ip4(1)) == 3_000_010);
    assert!(lab.set_elements("block_v4").is_empty());
    s.shutdown(Shutdown::Both).unwrap();
    drain.join().unwrap();
}
