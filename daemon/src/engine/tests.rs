use std::collections::BTreeMap;

use super::*;
use crate::config::{Config, DaemonConfig, Defaults, DeviceConfig, GeoipConfig, Profile};
use crate::policy::lists::LoadedList;

const CAM: Mac = Mac([2, 0, 0, 0, 7, 1]);
const PHONE: Mac = Mac([2, 0, 0, 0, 7, 2]);
const R: Resolver = Resolver::Router;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn config(mode: Mode, denied: Verdict, unlisted: Verdict) -> Config {
    let mut profiles = BTreeMap::new();
    profiles.insert(
        "iot".to_string(),
        Profile { unlisted, denied, deny: vec!["bad".into()], ..Profile::implicit("iot") },
    );
    Config {
        source: "/etc/leash/leash.toml".into(),
        daemon: DaemonConfig {
            mode,
            lan: vec!["br-lan".into()],
            alert_interval: Duration::from_secs(3600),
            dns_nflog_group: 5335,
            keep_on_exit: false,
            leases: "/tmp/dhcp.leases".into(),
            state_dir: "/etc/leash/state".into(),
            socket: "/var/run/leash.sock".into(),
            nft_table: "leash".into(),
            syslog: "/dev/log".into(),
            conntrack_buffer: crate::config::ConntrackBuffer::Auto,
            dns_hold: crate::config::DnsHold::Auto,
            dns_queue: crate::config::DEFAULT_DNS_QUEUE,
        },
        geoip: GeoipConfig::default(),
        defaults: Defaults { profile: "iot".into(), learn: Duration::ZERO },
        profiles,
        lists: BTreeMap::new(),
        devices: vec![DeviceConfig { mac: CAM, name: Some("living-room-camera".into()), profile: None, consent: vec!["198.51.100.0/24".parse().unwrap()] }],
        notify: Default::default(),
    }
}

fn engine(mode: Mode, denied: Verdict, unlisted: Verdict) -> Engine {
    let mut lists = BTreeMap::new();
    lists.insert(
        "bad".to_string(),
        LoadedList {
            name: "bad".into(),
            domains: crate::policy::domainset::DomainSet::from_names(["tracking.example.com"]),
            nets: vec!["203.0.113.0/24".parse().unwrap(), "2001:db8:bad::/48".parse().unwrap()].into(),
            selectors: vec![],
            bad_lines: 0,
        },
    );
    let mut e = Engine::new(Policy::new(config(mode, denied, unlisted), lists), State::new(), 1000);
    e.net.link(3, "br-lan");
    e.net.link(4, "wan");
    e.net.addr(3, ip("192.168.7.1"), 24);
    e.net.addr(3, ip("fd00:7::1"), 64);
    e.net.addr(4, ip("192.0.2.1"), 24);
    let mut fx = Vec::new();
    e.on_neighbour(3, ip("192.168.7.11"), Some(CAM), false, 1000, &mut fx);
    e.on_neighbour(3, ip("fd00:7::11"), Some(CAM), false, 1000, &mut fx);
    e.on_neighbour(3, ip("192.168.7.12"), Some(PHONE), false, 1000, &mut fx);
    // Both devices are new: announced once each, and remembered.
    assert_eq!(logs(&fx).iter().filter(|l| l.starts_with("DEVICE action=new")).count(), 2, "{:?}", logs(&fx));
    assert!(fx.iter().all(|f| matches!(f, Effect::Persist | Effect::Log(_))));
    e
}

fn flow(src: &str, dst: &str) -> Flow {
    Flow { src: ip(src), dst: ip(dst), proto: 6, sport: 40000, dport: 443 }
}

fn logs(fx: &[Effect]) -> Vec<String> {
    fx.iter().filter_map(|e| if let Effect::Log(a) = e { Some(a.to_string()) } else { None }).collect()
}

fn sets(fx: &[Effect]) -> Vec<SetChange> {
    fx.iter().filter_map(|e| if let Effect::Set(s) = e { Some(s.clone()) } else { None }).collect()
}

#[test]
fn denied_destination_quarantines_with_spec_line() {
    let mut e = engine(Mode::Enforce, Verdict::Quarantine, Verdict::Allow);
    let mut fx = Vec::new();
    assert_eq!(e.on_flow(&flow("192.168.7.11", "203.0.113.7"), 1001, &mut fx), FlowOutcome::Judged(Verdict::Quarantine));
    assert_eq!(
        logs(&fx),
        ["QUARANTINE device=02:00:00:00:07:01 name=living-room-camera ip=192.168.7.11 dst=203.0.113.7 proto=tcp dport=443 rule=list:bad profile=iot"]
    );
    let s = sets(&fx);
    assert!(s.contains(&SetChange::Add { elem: Elem::QuarantineMac(CAM), timeout: None }));
    assert!(s.contains(&SetChange::Add { elem: Elem::QuarantineAddr(ip("192.168.7.11")), timeout: None }));
    assert!(s.contains(&SetChange::Add { elem: Elem::QuarantineAddr(ip("fd00:7::11")), timeout: None }));
    assert!(fx.contains(&Effect::Persist));
    assert!(fx.contains(&Effect::Cut(Cut::Device(vec![ip("fd00:7::11"), ip("192.168.7.11")]))), "{fx:?}");
    assert!(e.is_quarantined(CAM));
    assert_eq!(e.persisted_elements().len(), 3);
    // Later flows of a quarantined device: no new line.
    let mut fx = Vec::new();
    assert_eq!(e.on_flow(&flow("192.168.7.11", "203.0.113.8"), 1002, &mut fx), FlowOutcome::Quarantined);
    assert!(logs(&fx).is_empty());
}

#[test]
fn consent_beats_deny_list_and_block_is_per_destination() {
    let mut e = engine(Mode::Enforce, Verdict::Block, Verdict::Allow);
    let mut fx = Vec::new();
    // Configured consent 198.51.100.0/24 for the camera.
    assert_eq!(e.on_flow(&flow("192.168.7.11", "198.51.100.20"), 1001, &mut fx), FlowOutcome::Judged(Verdict::Allow));
    assert!(fx.is_empty());
    assert_eq!(e.on_flow(&flow("192.168.7.12", "203.0.113.7"), 1001, &mut fx), FlowOutcome::Judged(Verdict::Block));
    assert_eq!(sets(&fx), [SetChange::Add { elem: Elem::Block(PHONE, ip("203.0.113.7")), timeout: Some(block_timeout(PHONE, ip("203.0.113.7"))) }]);
    assert!(logs(&fx)[0].starts_with("BLOCK device=02:00:00:00:07:02 ip=192.168.7.12 dst=203.0.113.7"));
    assert!(fx.contains(&Effect::Cut(Cut::Flow(flow("192.168.7.12", "203.0.113.7")))));
    // Consent by CLI lifts the block.
    let mut fx = Vec::new();
    assert!(e.consent(PHONE, "203.0.113.7".parse().unwrap(), 1002, &mut fx));
    assert!(sets(&fx).contains(&SetChange::Delete(Elem::Block(PHONE, ip("203.0.113.7")))));
    assert!(logs(&fx)[0].starts_with("CONSENT device=02:00:00:00:07:02"));
    let x = e.explain(PHONE, "203.0.113.7", 1002).unwrap();
    assert_eq!((x.verdict, x.rule.as_str()), (Verdict::Allow, "consent:203.0.113.7"));
    let mut fx = Vec::new();
    assert!(e.revoke(PHONE, &"203.0.113.7".parse().unwrap(), 1003, &mut fx));
    assert_eq!(e.explain(PHONE, "203.0.113.7", 1002).unwrap().verdict, Verdict::Block);
}

#[test]
fn monitor_mode_only_alerts_and_suppresses_repeats() {
    let mut e = engine(Mode::Monitor, Verdict::Quarantine, Verdict::Block);
    let mut fx = Vec::new();
    e.on_flow(&flow("192.168.7.12", "203.0.113.7"), 1001, &mut fx);
    e.on_flow(&flow("192.168.7.12", "192.0.2.77"), 1001, &mut fx);
    let l = logs(&fx);
    assert!(l[0].starts_with("WOULD-QUARANTINE ") && l[0].contains("rule=list:bad"), "{l:?}");
    assert!(l[1].starts_with("WOULD-BLOCK ") && l[1].contains("rule=unlisted"), "{l:?}");
    assert!(sets(&fx).is_empty() && !fx.iter().any(|e| matches!(e, Effect::Cut(_) | Effect::Persist)));
    let mut fx = Vec::new();
    e.on_flow(&flow("192.168.7.12", "203.0.113.7"), 1500, &mut fx);
    assert!(fx.is_empty(), "repeat within alert_interval is suppressed");
    e.on_flow(&flow("192.168.7.12", "203.0.113.7"), 1001 + 3600, &mut fx);
    assert_eq!(logs(&fx).len(), 1, "after alert_interval it is logged again");
}

#[test]
fn lan_router_and_unknown_sources_are_not_judged() {
    let mut e = engine(Mode::Enforce, Verdict::Quarantine, Verdict::Quarantine);
    let mut fx = Vec::new();
    assert_eq!(e.on_flow(&flow("192.168.7.11", "192.168.7.12"), 1001, &mut fx), FlowOutcome::Ignored);
    assert_eq!(e.on_flow(&flow("192.168.7.11", "192.168.7.1"), 1001, &mut fx), FlowOutcome::Ignored);
    assert_eq!(e.on_flow(&flow("192.168.7.11", "224.0.0.251"), 1001, &mut fx), FlowOutcome::Ignored);
    assert_eq!(e.on_flow(&flow("192.0.2.1", "203.0.113.7"), 1001, &mut fx), FlowOutcome::Ignored);
    assert_eq!(e.on_flow(&flow("192.168.7.99", "203.0.113.7"), 1001, &mut fx), FlowOutcome::Unidentified);
    assert!(fx.is_empty());
}

#[test]
fn manual_quarantine_release_and_new_addresses() {
    let mut e = engine(Mode::Enforce, Verdict::Block, Verdict::Allow);
    let mut fx = Vec::new();
    assert!(e.quarantine_manual(PHONE, 1001, &mut fx));
    assert!(!e.quarantine_manual(PHONE, 1001, &mut fx));
    assert!(logs(&fx)[0].starts_with("QUARANTINE device=02:00:00:00:07:02 ip=192.168.7.12 rule=manual profile=iot"), "{:?}", logs(&fx));
    let mut fx = Vec::new();
    e.on_neighbour(3, ip("fd00:7::abcd"), Some(PHONE), false, 1002, &mut fx);
    assert!(sets(&fx).contains(&SetChange::Add { elem: Elem::QuarantineAddr(ip("fd00:7::abcd")), timeout: None }));
    let mut fx = Vec::new();
    assert!(e.release(PHONE, &mut fx));
    let s = sets(&fx);
    assert!(s.contains(&SetChange::Delete(Elem::QuarantineMac(PHONE))));
    assert!(s.contains(&SetChange::Delete(Elem::QuarantineAddr(ip("fd00:7::abcd")))));
    assert!(logs(&fx)[0].starts_with("RELEASE device=02:00:00:00:07:02"));
    assert!(!e.is_quarantined(PHONE));
}

#[test]
fn reload_into_monitor_lifts_blocks() {
    let mut e = engine(Mode::Enforce, Verdict::Block, Verdict::Allow);
    let mut fx = Vec::new();
    e.on_flow(&flow("192.168.7.12", "2001:db8:bad::7"), 1001, &mut fx);
    assert!(sets(&fx).contains(&SetChange::Add { elem: Elem::Block(PHONE, ip("2001:db8:bad::7")), timeout: Some(block_timeout(PHONE, ip("2001:db8:bad::7"))) }));
    let lists = std::mem::take(&mut e.policy.lists);
    let mut fx = Vec::new();
    e.reload(Policy::new(config(Mode::Monitor, Verdict::Block, Verdict::Allow), lists), 1002, &mut fx);
    assert_eq!(sets(&fx), [SetChange::Delete(Elem::Block(PHONE, ip("2001:db8:bad::7")))]);
}

#[test]
fn resolves_devices_by_mac_name_and_address() {
    let e = engine(Mode::Enforce, Verdict::Block, Verdict::Allow);
    assert_eq!(e.resolve("02:00:00:00:07:01"), Ok(CAM));
    assert_eq!(e.resolve("living-room-camera"), Ok(CAM));
    assert_eq!(e.resolve("fd00:7::11"), Ok(CAM));
    assert!(e.resolve("nobody").is_err());
}

#[test]
fn cut_selects_outbound_and_inbound_flows_of_the_device() {
    let e = engine(Mode::Enforce, Verdict::Block, Verdict::Allow);
    let all = Cut::Device(vec![ip("192.168.7.11")]);
    let out = flow("192.168.7.11", "203.0.113.7");
    let back = flow("203.0.113.7", "192.168.7.11");
    assert!(e.cut_matches(&all, &out, Some(&back)));
    assert!(e.cut_matches(&all, &back, Some(&out)), "inbound from the WAN");
    assert!(!e.cut_matches(&all, &flow("192.168.7.11", "192.168.7.12"), None), "LAN flows stay");
    let one = Cut::To { addrs: vec![ip("192.168.7.11")], dst: ip("203.0.113.8") };
    assert!(!e.cut_matches(&one, &out, None));
    assert!(e.cut_matches(&Cut::Flow(out), &out, None));
    assert!(!e.cut_matches(&Cut::Flow(out), &back, None));
}

#[test]
fn learning_turns_destinations_into_consents() {
    let mut e = engine(Mode::Enforce, Verdict::Block, Verdict::Block);
    e.policy.config.defaults.learn = Duration::from_secs(86_400);
    let mut fx = Vec::new();
    let new_dev = Mac([2, 0, 0, 0, 7, 9]);
    e.on_neighbour(3, ip("192.168.7.19"), Some(new_dev), false, 2000, &mut fx);
    assert!(fx.contains(&Effect::Persist));
    let mut fx = Vec::new();
    assert_eq!(e.on_flow(&flow("192.168.7.19", "192.0.2.50"), 2001, &mut fx), FlowOutcome::Judged(Verdict::Allow));
    assert!(logs(&fx)[0].starts_with("LEARNED device=02:00:00:00:07:09"), "{:?}", logs(&fx));
    assert_eq!(e.explain(new_dev, "192.0.2.50", 2001).unwrap().verdict, Verdict::Allow);
    let mut fx = Vec::new();
    assert_eq!(e.on_flow(&flow("192.168.7.19", "192.0.2.51"), 2000 + 86_400, &mut fx), FlowOutcome::Judged(Verdict::Block));
}

#[test]
fn learning_prefers_names_and_is_capped() {
    let mut e = engine(Mode::Enforce, Verdict::Block, Verdict::Block);
    e.policy.config.defaults.learn = Duration::from_secs(86_400);
    let dev = Mac([2, 0, 0, 0, 7, 9]);
    let mut fx = Vec::new();
    e.on_neighbour(3, ip("192.168.7.19"), Some(dev), false, 2000, &mut fx);
    e.on_dns(ip("192.168.7.19"), &[AddrRecord { addr: ip("192.0.2.60"), names: vec!["api.example.org".into()], ttl: 60 }], R, 2001, &mut fx);
    e.on_flow(&flow("192.168.7.19", "192.0.2.60"), 2001, &mut fx);
    assert!(e.state().consents[&dev].contains(&"=api.example.org".parse().unwrap()));
    for i in 0..(MAX_LEARNED_PER_DEVICE as u32 + 10) {
        let dst = IpAddr::from((0xc633_0000u32 + i).to_be_bytes());
        assert_eq!(e.on_flow(&Flow { dst, ..flow("192.168.7.19", "192.0.2.1") }, 2002, &mut fx), FlowOutcome::Judged(Verdict::Allow));
    }
    assert_eq!(e.state().consents[&dev].len(), MAX_LEARNED_PER_DEVICE);
    assert_eq!(e.counters.learn_capped, 11);
}

fn dns(addr: &str, names: &[&str]) -> AddrRecord {
    AddrRecord { addr: ip(addr), names: names.iter().map(|n| n.to_string()).collect(), ttl: 300 }
}

#[test]
fn denied_name_is_blocked_when_its_answer_passes() {
    let mut e = engine(Mode::Enforce, Verdict::Block, Verdict::Allow);
    let mut fx = Vec::new();
    e.on_dns(ip("192.168.7.12"), &[dns("192.0.2.99", &["cdn.example.net", "eu.tracking.example.com"]), dns("192.168.7.5", &["lan.example.com"])], R, 1001, &mut fx);
    assert_eq!(sets(&fx), [SetChange::Add { elem: Elem::Block(PHONE, ip("192.0.2.99")), timeout: Some(block_timeout(PHONE, ip("192.0.2.99"))) }]);
    assert_eq!(
        logs(&fx),
        ["BLOCK device=02:00:00:00:07:02 ip=192.168.7.12 dst=192.0.2.99 host=cdn.example.net rule=list:bad profile=iot"]
    );
    assert_eq!(e.counters.dns_judged_deny, 1);
    // The device's connection then finds the block in place: no new line.
    let mut fx = Vec::new();
    assert_eq!(e.on_flow(&flow("192.168.7.12", "192.0.2.99"), 1001, &mut fx), FlowOutcome::Judged(Verdict::Block));
    assert!(logs(&fx).is_empty());
    // Names are per device: the camera never resolved it.
    let x = e.explain(CAM, "192.0.2.99", 1001).unwrap();
    assert_eq!(x.verdict, Verdict::Allow);
    assert_eq!(e.explain(PHONE, "tracking.example.com", 1001).unwrap().rule, "list:bad");
    let d = e.destinations.of(PHONE);
    assert_eq!(d[0].names, ["cdn.example.net", "eu.tracking.example.com"]);
    // Answers to unknown clients are left to the caller.
    assert!(!e.on_dns(ip("192.168.7.99"), &[dns("192.0.2.98", &["tracking.example.com"])], R, 1001, &mut fx));
}

#[test]
fn conntrack_judging_uses_the_names_the_device_resolved() {
    let mut e = engine(Mode::Enforce, Verdict::Quarantine, Verdict::Allow);
    let mut fx = Vec::new();
    // Consented by name: an allowed answer is only remembered.
    e.consent(PHONE, "=ok.example.org".parse().unwrap(), 1000, &mut fx);
    e.on_dns(ip("192.168.7.12"), &[dns("192.0.2.50", &["ok.example.org"])], R, 1001, &mut fx);
    assert!(sets(&fx).is_empty());
    assert_eq!(e.on_flow(&flow("192.168.7.12", "192.0.2.50"), 1001, &mut fx), FlowOutcome::Judged(Verdict::Allow));
    assert_eq!(e.explain(PHONE, "192.0.2.50", 1001).unwrap().rule, "consent:=ok.example.org");
}

#[test]
fn country_and_asn_come_from_the_databases() {
    let dir = std::env::temp_dir().join(format!("leash-engine-geo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (c, a) = (dir.join("country.mmdb"), dir.join("asn.mmdb"));
    std::fs::write(&c, crate::policy::geoip::mmdb_writer::test_country_db().unwrap()).unwrap();
    std::fs::write(&a, crate::policy::geoip::mmdb_writer::test_asn_db().unwrap()).unwrap();
    let geo = crate::policy::geoip::GeoIp::open(&crate::config::GeoipConfig { country_db: Some(c), asn_db: Some(a) }).unwrap();
    let mut cfg = config(Mode::Enforce, Verdict::Block, Verdict::Allow);
    cfg.profiles.get_mut("iot").unwrap().deny = vec!["cn".into()];
    let mut lists = BTreeMap::new();
    lists.insert(
        "cn".to_string(),
        LoadedList { name: "cn".into(), domains: Default::default(), nets: Default::default(), selectors: vec!["country:CN".parse().unwrap()], bad_lines: 0 },
    );
    let mut e = Engine::new(Policy::new(cfg, lists).with_geo(geo), State::new(), 1000);
    e.net.link(3, "br-lan");
    e.net.addr(3, ip("192.168.7.1"), 24);
    let mut fx = Vec::new();
    e.on_neighbour(3, ip("192.168.7.12"), Some(PHONE), false, 1000, &mut fx);
    fx.clear();
    assert_eq!(e.on_flow(&flow("192.168.7.12", "203.0.113.7"), 1001, &mut fx), FlowOutcome::Judged(Verdict::Block));
    let l = logs(&fx);
    assert!(l[0].contains(" dst=203.0.113.7 country=CN asn=4808 proto=tcp dport=443 rule=list:cn "), "{l:?}");
    assert_eq!(e.on_flow(&flow("192.168.7.12", "198.51.100.20"), 1001, &mut fx), FlowOutcome::Judged(Verdict::Allow));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn upload_alert_fires_for_unconsented_destinations() {
    let mut e = engine(Mode::Enforce, Verdict::Block, Verdict::Allow);
    // A policy is built whole (its profiles are resolved then), not edited.
    let mut c = e.policy.config.clone();
    c.profiles.get_mut("iot").unwrap().upload_alert = Some(50_000_000);
    e.policy = Policy::new(c, std::mem::take(&mut e.policy.lists));
    let mut fx = Vec::new();
    let up = flow("192.168.7.12", "192.0.2.60");
    e.on_flow(&up, 1001, &mut fx);
    e.on_counters(&FlowCounters { id: 7, orig: up, up: 30_000_000, down: 1000 }, false, 1010, &mut fx);
    assert!(logs(&fx).is_empty());
    e.on_counters(&FlowCounters { id: 7, orig: up, up: 60_000_000, down: 2000 }, true, 1020, &mut fx);
    assert_eq!(
        logs(&fx),
        ["ALERT device=02:00:00:00:07:02 ip=192.168.7.12 dst=192.0.2.60 proto=tcp dport=443 bytes_up=60000000 rule=upload_alert profile=iot"]
    );
    let d = &e.destinations.of(PHONE)[0];
    assert_eq!((d.bytes_up, d.bytes_down), (60_000_000, 2000), "deltas, not sums of readings");
    // The camera consented to 198.51.100.0/24: no alert however much it sends.
    let mut fx = Vec::new();
    let cam = flow("192.168.7.11", "198.51.100.20");
    e.on_flow(&cam, 1001, &mut fx);
    e.on_counters(&FlowCounters { id: 8, orig: cam, up: 900_000_000, down: 0 }, true, 1020, &mut fx);
    assert!(logs(&fx).is_empty());
}

#[test]
fn an_outside_resolver_can_deny_but_never_grant_consent() {
    let mut e = engine(Mode::Enforce, Verdict::Block, Verdict::Allow);
    let mut fx = Vec::new();
    e.consent(PHONE, "ok.example.org".parse().unwrap(), 1000, &mut fx);
    let outside = Resolver::Outside(ip("192.0.2.53"));
    // The device's own resolver maps the consented name to a denied address.
    let mut fx = Vec::new();
    e.on_dns(ip("192.168.7.12"), &[dns("203.0.113.9", &["ok.example.org"])], outside, 1001, &mut fx);
    assert_eq!(sets(&fx), [SetChange::Add { elem: Elem::Block(PHONE, ip("203.0.113.9")), timeout: Some(block_timeout(PHONE, ip("203.0.113.9"))) }]);
    let x = e.explain(PHONE, "203.0.113.9", 1001).unwrap();
    assert_eq!((x.verdict, x.rule.as_str()), (Verdict::Block, "list:bad"));
    assert_eq!(x.resolvers, [outside]);
    assert_eq!(e.destinations.of(PHONE)[0].resolvers, [outside]);
    // The same name through the router's resolver does grant it.
    let mut fx = Vec::new();
    e.on_dns(ip("192.168.7.12"), &[dns("203.0.113.10", &["ok.example.org"])], R, 1001, &mut fx);
    assert!(sets(&fx).is_empty());
    assert_eq!(e.explain(PHONE, "203.0.113.10", 1001).unwrap().rule, "consent:ok.example.org");
    // And an outside name is no consent for a flow either.
    let mut fx = Vec::new();
    assert_eq!(e.on_flow(&flow("192.168.7.12", "203.0.113.9"), 1002, &mut fx), FlowOutcome::Judged(Verdict::Block));
}

#[test]
fn spoofed_and_unasked_answers_are_ignored_and_counted() {
    let mut e = engine(Mode::Enforce, Verdict::Quarantine, Verdict::Allow);
    let a = DnsAnswer { client: ip("192.168.7.12"), server: ip("192.0.2.53"), proto: 17, client_port: 5000, server_port: 53, qname: "t".into(), records: vec![] };
    let spoofed = Provenance { hook: Some(2), ct_info: Some(2), ct_orig: None };
    assert_eq!(e.vouch(&a, &spoofed), None);
    assert_eq!(e.counters.dns_unsolicited, 1);
    let asked = Provenance { hook: Some(2), ct_info: Some(3), ct_orig: Some(trust::asked_flow(&a)) };
    assert_eq!(e.vouch(&a, &asked), Some(Resolver::Outside(ip("192.0.2.53"))));
    let other = DnsAnswer { client: ip("192.168.7.11"), ..a.clone() };
    assert_eq!(e.vouch(&other, &asked), None, "another device's flow");
    assert_eq!(e.counters.dns_unsolicited, 2);
}

#[test]
fn a_block_given_by_a_name_survives_an_unrelated_consent_and_reload() {
    let mut e = engine(Mode::Enforce, Verdict::Block, Verdict::Allow);
    let mut fx = Vec::new();
    e.on_dns(ip("192.168.7.12"), &[dns("192.0.2.99", &["tracking.example.com"])], R, 1001, &mut fx);
    assert_eq!(sets(&fx).len(), 1);
    // The name's answer expires from the cache; the block keeps its names.
    let later = 1001 + 300 + crate::names::cache::GRACE_SECS + 1;
    e.tick(later, &mut Vec::new());
    let mut fx = Vec::new();
    e.consent(PHONE, "other.example.net".parse().unwrap(), later, &mut fx);
    assert!(sets(&fx).is_empty(), "an unrelated consent lifts nothing: {fx:?}");
    let lists = std::mem::take(&mut e.policy.lists);
    let mut fx = Vec::new();
    e.reload(Policy::new(config(Mode::Enforce, Verdict::Block, Verdict::Allow), lists), later, &mut fx);
    assert!(sets(&fx).is_empty(), "a reload with the same policy lifts nothing: {fx:?}");
    assert!(e.explain(PHONE, "192.0.2.99", later).unwrap().blocked_now);
    // A consent for that name lifts it; so does a mode change.
    let mut fx = Vec::new();
    e.consent(PHONE, "tracking.example.com".parse().unwrap(), later, &mut fx);
    assert_eq!(sets(&fx), [SetChange::Delete(Elem::Block(PHONE, ip("192.0.2.99")))]);
    let d = e.destinations.of(PHONE).into_iter().find(|d| d.addr == ip("192.0.2.99")).unwrap();
    assert_eq!((d.verdict, d.rule.to_string()), (Verdict::Allow, "consent:tracking.example.com".to_string()), "destinations shows the verdict of now");
}

#[test]
fn a_reload_that_drops_the_list_lifts_its_blocks_and_quarantines() {
    let mut e = engine(Mode::Enforce, Verdict::Quarantine, Verdict::Allow);
    let mut fx = Vec::new();
    e.on_flow(&flow("192.168.7.11", "203.0.113.7"), 1001, &mut fx);
    assert!(e.is_quarantined(CAM));
    assert_eq!(e.state().quarantines[&CAM].dst, Some(ip("203.0.113.7")));
    // The same policy keeps it.
    let lists = std::mem::take(&mut e.policy.lists);
    let mut fx = Vec::new();
    e.reload(Policy::new(config(Mode::Enforce, Verdict::Quarantine, Verdict::Allow), lists.clone()), 1002, &mut fx);
    assert!(e.is_quarantined(CAM) && fx.is_empty(), "{fx:?}");
    // denied = block now: the quarantine gives way to a block of that destination.
    let mut fx = Vec::new();
    e.reload(Policy::new(config(Mode::Enforce, Verdict::Block, Verdict::Allow), lists.clone()), 1003, &mut fx);
    assert!(!e.is_quarantined(CAM));
    let s = sets(&fx);
    assert!(s.contains(&SetChange::Delete(Elem::QuarantineMac(CAM))), "{s:?}");
    assert!(s.contains(&SetChange::Add { elem: Elem::Block(CAM, ip("203.0.113.7")), timeout: Some(block_timeout(CAM, ip("203.0.113.7"))) }), "{s:?}");
    assert!(logs(&fx).iter().any(|l| l.starts_with("RELEASE device=02:00:00:00:07:01") && l.contains("rule=list:bad because=list:bad")), "{:?}", logs(&fx));
    // Monitor mode: nothing stays enforced.
    let mut fx = Vec::new();
    e.reload(Policy::new(config(Mode::Monitor, Verdict::Block, Verdict::Allow), lists), 1004, &mut fx);
    assert_eq!(sets(&fx), [SetChange::Delete(Elem::Block(CAM, ip("203.0.113.7")))]);
    // A quarantine by hand stays whatever the policy says.
    let mut fx = Vec::new();
    e.quarantine_manual(PHONE, 1005, &mut fx);
    e.consent(PHONE, "any".parse().unwrap(), 1005, &mut fx);
    assert!(e.is_quarantined(PHONE));
}

#[test]
fn a_consent_lifts_the_quarantine_it_answers() {
    let mut e = engine(Mode::Enforce, Verdict::Quarantine, Verdict::Allow);
    let mut fx = Vec::new();
    e.on_dns(ip("192.168.7.12"), &[dns("192.0.2.99", &["tracking.example.com"])], R, 1001, &mut fx);
    assert!(e.is_quarantined(PHONE));
    let mut fx = Vec::new();
    e.consent(PHONE, "=other.example.com".parse().unwrap(), 1002, &mut fx);
    assert!(e.is_quarantined(PHONE), "an unrelated consent: {fx:?}");
    e.consent(PHONE, "tracking.example.com".parse().unwrap(), 1002, &mut fx);
    assert!(!e.is_quarantined(PHONE));
    assert!(logs(&fx).iter().any(|l| l.starts_with("RELEASE ") && l.contains("because=consent:tracking.example.com")), "{:?}", logs(&fx));
}

#[test]
fn a_flood_of_neighbours_never_evicts_pinned_devices() {
    let mut e = engine(Mode::Enforce, Verdict::Block, Verdict::Allow);
    let mut fx = Vec::new();
    assert!(e.quarantine_manual(PHONE, 1001, &mut fx));
    let tv = Mac([2, 0, 0, 0, 7, 3]);
    e.on_neighbour(3, ip("192.168.7.13"), Some(tv), false, 1001, &mut fx);
    assert!(e.consent(tv, "198.51.100.0/24".parse().unwrap(), 1001, &mut fx));
    let blocked = Mac([2, 0, 0, 0, 7, 4]);
    e.on_neighbour(3, ip("192.168.7.14"), Some(blocked), false, 1001, &mut fx);
    e.pin_device(blocked);
    // CAM is configured; PHONE quarantined; tv consented; `blocked` holds a block.
    e.net.addr(3, ip("10.77.0.1"), 16);
    for i in 0..(MAX_DEVICES as u32 + 1000) {
        let m = Mac([2, 0x77, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
        e.on_neighbour(3, IpAddr::from((0x0a4d_0000u32 + i + 2).to_be_bytes()), Some(m), false, 1002 + u64::from(i), &mut fx);
    }
    assert_eq!(e.devices.len(), MAX_DEVICES);
    assert!(e.devices.evicted >= 1000);
    for (m, a) in [(CAM, "192.168.7.11"), (PHONE, "192.168.7.12"), (tv, "192.168.7.13"), (blocked, "192.168.7.14")] {
        assert_eq!(e.devices.mac_of(ip(a)), Some(m), "{m} kept");
    }
    assert_eq!(e.status(2000).devices_pinned, 4);
    // Let go again, each ages out like any other device.
    e.release(PHONE, &mut fx);
    e.revoke(tv, &"198.51.100.0/24".parse().unwrap(), 1010, &mut fx);
    e.unpin_device(blocked);
    assert_eq!(e.status(2000).devices_pinned, 1, "the configured camera stays pinned");
    // Unpinned, they are the most recent: a table's worth of new devices pushes them out.
    for i in 0..MAX_DEVICES as u32 {
        let m = Mac([2, 0x78, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
        e.on_neighbour(3, IpAddr::from((0x0a4e_0000u32 + i).to_be_bytes()), Some(m), false, 9000, &mut fx);
    }
    for a in ["192.168.7.12", "192.168.7.13", "192.168.7.14"] {
        assert_eq!(e.devices.mac_of(ip(a)), None, "{a} evicted once unpinned");
    }
    assert_eq!(e.devices.mac_of(ip("192.168.7.11")), Some(CAM));
}

#[test]
fn suppression_and_counters_stay_bounded_without_scans() {
    let mut e = engine(Mode::Monitor, Verdict::Block, Verdict::Block);
    let mut fx = Vec::new();
    // Distinct destinations, each logged once: the table fills, then the oldest go.
    for i in 0..(MAX_SUPPRESS as u32 + 100) {
        let dst = IpAddr::from((0xc633_0000u32 + i).to_be_bytes());
        e.on_flow(&Flow { dst, ..flow("192.168.7.12", "192.0.2.1") }, 1001, &mut fx);
    }
    assert_eq!(e.suppress.len(), MAX_SUPPRESS);
    assert_eq!(e.counters.suppress_evicted, 100);
    // The first destination was forgotten: logged again; the last is still suppressed.
    let mut fx = Vec::new();
    e.on_flow(&Flow { dst: IpAddr::from(0xc633_0000u32.to_be_bytes()), ..flow("192.168.7.12", "192.0.2.1") }, 1002, &mut fx);
    assert_eq!(logs(&fx).len(), 1);
    let last = IpAddr::from((0xc633_0000u32 + MAX_SUPPRESS as u32 + 99).to_be_bytes());
    e.on_flow(&Flow { dst: last, ..flow("192.168.7.12", "192.0.2.1") }, 1002, &mut fx);
    assert_eq!(logs(&fx).len(), 1);
    // Expired entries are forgotten uncounted.
    e.tick(1001 + 3600, &mut Vec::new());
    assert_eq!(e.suppress.len(), 1, "only the line logged at 1002 is live");
    assert_eq!(e.counters.suppress_evicted, 101, "the re-logged one evicted one more, the expired none");

    let up = flow("192.168.7.12", "192.0.2.60");
    for id in 0..(MAX_COUNTED as u32 + 10) {
        e.on_counters(&FlowCounters { id, orig: up, up: 10, down: 0 }, false, 1010, &mut fx);
    }
    assert_eq!(e.counters.counted_evicted, 10);
    // A flow read before is accounted by its delta, and forgotten when it ends.
    e.on_counters(&FlowCounters { id: MAX_COUNTED as u32 + 9, orig: up, up: 15, down: 0 }, true, 1011, &mut fx);
    assert_eq!(e.counted.len(), MAX_COUNTED - 1);
}

#[test]
fn a_device_with_blocks_is_pinned_until_its_last_block_goes() {
    let mut e = engine(Mode::Enforce, Verdict::Block, Verdict::Allow);
    let mut fx = Vec::new();
    assert!(!e.devices.is_pinned(PHONE));
    e.on_flow(&flow("192.168.7.12", "203.0.113.7"), 1001, &mut fx);
    e.on_flow(&flow("192.168.7.12", "203.0.113.9"), 1001, &mut fx);
    assert!(e.devices.is_pinned(PHONE), "a blocked device is never evicted");
    let mut fx = Vec::new();
    e.consent(PHONE, "203.0.113.7".parse().unwrap(), 1002, &mut fx);
    e.revoke(PHONE, &"203.0.113.7".parse().unwrap(), 1003, &mut fx);
    assert!(e.devices.is_pinned(PHONE), "one block left");
    let lists = std::mem::take(&mut e.policy.lists);
    e.reload(Policy::new(config(Mode::Monitor, Verdict::Block, Verdict::Allow), lists), 1003, &mut fx);
    assert_eq!(e.block_count(), 0);
    assert!(!e.devices.is_pinned(PHONE), "no block, no consent, not configured: evictable again");
}

#[test]
fn at_the_cap_the_least_recently_given_block_is_forgotten_in_o1() {
    let mut e = engine(Mode::Enforce, Verdict::Block, Verdict::Allow);
    let mut fx = Vec::new();
    for i in 0..(MAX_BLOCKS as u32 + 3) {
        let dst = IpAddr::from((0xc612_0000u32 + i).to_be_bytes());
        e.add_block(PHONE, dst, Rule::Unlisted, Names::default(), 1000, &mut fx);
    }
    assert_eq!(e.block_count(), MAX_BLOCKS);
    assert_eq!(e.counters.blocks_evicted, 3);
    let first = IpAddr::from(0xc612_0000u32.to_be_bytes());
    assert!(fx.contains(&Effect::Journal(Line::Remove { mac: PHONE, addr: first })), "the journal forgets it too");
    assert!(e.devices.is_pinned(PHONE));
}

#[test]
fn a_consent_for_a_while_expires_by_itself_and_the_block_comes_back() {
    let mut e = engine(Mode::Enforce, Verdict::Block, Verdict::Allow);
    let mut fx = Vec::new();
    assert_eq!(e.on_flow(&flow("192.168.7.12", "203.0.113.7"), 1001, &mut fx), FlowOutcome::Judged(Verdict::Block));
    let sel: Selector = "203.0.113.7".parse().unwrap();
    let mut fx = Vec::new();
    assert!(e.consent_until(PHONE, sel.clone(), Some(1002 + 900), 1002, &mut fx));
    let l = logs(&fx);
    assert!(l[0].starts_with("CONSENT device=02:00:00:00:07:02") && l[0].ends_with("consent=203.0.113.7 action=grant for=15m"), "{l:?}");
    assert!(sets(&fx).contains(&SetChange::Delete(Elem::Block(PHONE, ip("203.0.113.7")))), "the block is lifted");
    assert!(fx.contains(&Effect::Persist));
    assert_eq!(e.state().consent_expiry[&PHONE][&sel], 1902);
    // The same grant again changes nothing; a longer one moves the expiry.
    assert!(!e.consent_until(PHONE, sel.clone(), Some(1902), 1002, &mut Vec::new()));
    assert!(e.consent_until(PHONE, sel.clone(), Some(2000), 1100, &mut Vec::new()));
    // Not yet.
    let mut fx = Vec::new();
    e.tick(1999, &mut fx);
    assert!(logs(&fx).is_empty());
    assert_eq!(e.on_flow(&flow("192.168.7.12", "203.0.113.7"), 1999, &mut Vec::new()), FlowOutcome::Judged(Verdict::Allow));
    // Time is up: withdrawn, logged, persisted, and the destination is denied again.
    let mut fx = Vec::new();
    e.tick(2000, &mut fx);
    let l = logs(&fx);
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(l[0].ends_with("consent=203.0.113.7 action=expire"), "{l:?}");
    assert!(fx.contains(&Effect::Persist));
    // Blocked at once, its running flows cut: not only at the next flow.
    assert!(sets(&fx).iter().any(|s| matches!(s, SetChange::Add { elem: Elem::Block(PHONE, d), .. } if *d == ip("203.0.113.7"))), "{fx:?}");
    assert!(fx.iter().any(|f| matches!(f, Effect::Cut(Cut::To { dst, .. }) if *dst == ip("203.0.113.7"))), "{fx:?}");
    assert!(!e.state().consents.contains_key(&PHONE) && e.state().consent_expiry.is_empty());
    assert_eq!(e.on_flow(&flow("192.168.7.12", "203.0.113.7"), 2001, &mut Vec::new()), FlowOutcome::Judged(Verdict::Block));
    e.tick(3000, &mut fx);
    assert_eq!(logs(&fx).len(), 1, "expired once");
}

#[test]
fn a_timed_consent_survives_a_restart_and_a_permanent_one_is_never_shortened() {
    let mut e = engine(Mode::Enforce, Verdict::Block, Verdict::Allow);
    let sel: Selector = "tracking.example.com".parse().unwrap();
    assert!(e.consent_until(PHONE, sel.clone(), Some(5000), 1000, &mut Vec::new()));
    let saved = State::decode(std::path::Path::new("x"), &e.state().encode()).unwrap();
    assert_eq!(saved.consent_expiry[&PHONE][&sel], 5000);
    // The restarted engine expires it on time.
    let mut again = Engine::new(e.policy, saved, 1500);
    let mut fx = Vec::new();
    again.tick(4999, &mut fx);
    assert!(again.state().consents[&PHONE].contains(&sel) && logs(&fx).is_empty());
    again.tick(5000, &mut fx);
    assert!(logs(&fx)[0].ends_with("action=expire"), "{:?}", logs(&fx));
    // For ever stays for ever; for ever after a while drops the expiry.
    let mut fx = Vec::new();
    assert!(again.consent(PHONE, sel.clone(), 6000, &mut fx));
    assert!(!again.consent_until(PHONE, sel.clone(), Some(7000), 6000, &mut fx));
    assert!(again.state().consent_expiry.is_empty());
    let other: Selector = "other.example.com".parse().unwrap();
    assert!(again.consent_until(PHONE, other.clone(), Some(7000), 6000, &mut fx));
    assert!(again.consent(PHONE, other.clone(), 6001, &mut fx));
    again.tick(8000, &mut fx);
    assert!(again.state().consents[&PHONE].contains(&other), "no longer timed");
    // A revoke forgets the expiry too.
    assert!(again.consent_until(PHONE, "third.example".parse().unwrap(), Some(9000), 8000, &mut fx));
    assert!(again.revoke(PHONE, &"third.example".parse().unwrap(), 8000, &mut fx));
    assert!(again.state().consent_expiry.is_empty());
}

#[test]
fn a_new_device_is_announced_once_even_across_restarts() {
    let mut e = engine(Mode::Enforce, Verdict::Block, Verdict::Allow);
    e.policy.config.defaults.learn = Duration::from_secs(86_400);
    let dev = Mac([0x28, 0x6f, 0xb9, 0, 7, 9]);
    let mut fx = Vec::new();
    e.on_neighbour(3, ip("192.168.7.19"), Some(dev), false, 2000, &mut fx);
    assert_eq!(logs(&fx), vec!["DEVICE action=new device=28:6f:b9:00:07:09 ip=192.168.7.19 vendor=unknown profile=iot learn=1d".to_string()]);
    assert!(fx.contains(&Effect::Persist));
    // Another address of it, or the same again: nothing.
    let mut fx = Vec::new();
    e.on_neighbour(3, ip("fd00:7::19"), Some(dev), false, 2001, &mut fx);
    e.on_neighbour(3, ip("192.168.7.19"), Some(dev), false, 2002, &mut fx);
    assert!(fx.is_empty(), "{fx:?}");
    // After a restart (the state file read back), still nothing.
    let saved = State::decode(std::path::Path::new("x"), &e.state().encode()).unwrap();
    let mut again = Engine::new(e.policy, saved, 3000);
    again.net.link(3, "br-lan");
    again.net.addr(3, ip("192.168.7.1"), 24);
    let mut fx = Vec::new();
    again.on_neighbour(3, ip("192.168.7.19"), Some(dev), false, 3000, &mut fx);
    assert!(logs(&fx).is_empty(), "{:?}", logs(&fx));
    assert_eq!(again.counters.devices_new, 0);
}

#[test]
fn a_flood_of_new_macs_is_announced_at_a_bounded_rate() {
    let mut e = engine(Mode::Enforce, Verdict::Block, Verdict::Allow);
    let mut fx = Vec::new();
    for i in 0..(MAX_FIRST_SEEN as u32 + 100) {
        let b = i.to_be_bytes();
        e.on_neighbour(3, ip("192.168.7.50"), Some(Mac([2, 1, b[0], b[1], b[2], b[3]])), false, 5000, &mut fx);
    }
    let devices = logs(&fx).iter().filter(|l| l.starts_with("DEVICE")).count();
    assert_eq!(devices, MAX_ANNOUNCED_PER_MINUTE as usize);
    let writes = fx.iter().filter(|f| matches!(f, Effect::Persist)).count();
    assert_eq!(writes, MAX_ANNOUNCED_PER_MINUTE as usize, "the state file is not rewritten per MAC");
    assert_eq!(e.counters.devices_new_unannounced, MAX_FIRST_SEEN as u64 + 100 - u64::from(MAX_ANNOUNCED_PER_MINUTE));
    assert!(e.state().first_seen.len() <= MAX_FIRST_SEEN, "the persisted table stays bounded");
    assert!(e.counters.first_seen_evicted > 0);
    // A minute later the next new one is announced again.
    let mut fx = Vec::new();
    e.on_neighbour(3, ip("192.168.7.51"), Some(Mac([2, 9, 9, 9, 9, 9])), false, 5060, &mut fx);
    assert_eq!(logs(&fx).len(), 1);
}

/// The engine of `engine()`, reloaded with the camera's profile filtering
/// DNS (the phone keeps a profile without the filter).
fn filtering_engine(mode: Mode) -> Engine {
    let mut e = engine(mode, Verdict::Block, Verdict::Allow);
    let mut c = config(mode, Verdict::Block, Verdict::Allow);
    c.profiles.insert("cam".into(), Profile { deny: vec!["bad".into()], dns_filter: crate::config::DnsFilter::Nxdomain, ..Profile::implicit("cam") });
    c.devices[0].profile = Some("cam".into());
    c.devices[0].consent.push("=ok.tracking.example.com".parse().unwrap());
    let lists = e.policy().lists.clone();
    let mut fx = Vec::new();
    let mut p = Policy::new(c, lists);
    p.geo = e.policy().geo.clone();
    e.reload(p, 1000, &mut fx);
    e
}

#[test]
fn dns_filter_turns_denied_names_and_chains_into_nxdomain_for_that_device_only() {
    let e = filtering_engine(Mode::Enforce);
    let cam = ip("192.168.7.11");
    // The question name itself, with or without records.
    let j = e.dns_filter(cam, "tracking.example.com", &[], R, 1001).expect("denied name filtered");
    assert_eq!((j.verdict, j.rule.to_string().as_str()), (Verdict::Block, "list:bad"));
    // A harmless question whose CNAME chain leads to a denied name.
    let chain = [dns("192.0.2.80", &["cdn.example.org", "edge.tracking.example.com"])];
    assert!(e.dns_filter(cam, "cdn.example.org", &chain, R, 1001).is_some());
    assert!(e.dns_filter(cam, "www.example.org", &[dns("192.0.2.81", &["www.example.org"])], R, 1001).is_none());
    // A consent beats the list, as for flows; from an outside resolver it
    // does not count, so the answer is filtered there.
    assert!(e.dns_filter(cam, "ok.tracking.example.com", &[], R, 1001).is_none());
    assert!(e.dns_filter(cam, "ok.tracking.example.com", &[], Resolver::Outside(ip("192.0.2.53")), 1001).is_some());
    // The phone's profile does not filter; unknown clients are not filtered.
    assert!(e.dns_filter(ip("192.168.7.12"), "tracking.example.com", &[], R, 1001).is_none());
    assert!(e.dns_filter(ip("192.168.7.99"), "tracking.example.com", &[], R, 1001).is_none());
    // Monitor mode touches no traffic.
    assert!(filtering_engine(Mode::Monitor).dns_filter(cam, "tracking.example.com", &[], R, 1001).is_none());
}

// dns_bypass: the camera's profile (iot) alerts, the phone's (phone) blocks;
// both name the DoH list `doh` (1.1.1.1, 8.8.8.0/24).

fn bypass_config(mode: Mode, phone: crate::config::DnsBypass) -> Config {
    use crate::config::DnsBypass;
    let mut c = config(mode, Verdict::Block, Verdict::Allow);
    if let Some(p) = c.profiles.get_mut("iot") {
        p.dns_bypass = DnsBypass::Alert;
        p.dns_bypass_lists = vec!["doh".into()];
    }
    c.profiles.insert("phone".into(), Profile { dns_bypass: phone, dns_bypass_lists: vec!["doh".into()], deny: vec!["bad".into()], ..Profile::implicit("phone") });
    c.devices.push(DeviceConfig { mac: PHONE, name: None, profile: Some("phone".into()), consent: vec![] });
    c
}

fn bypass_lists() -> BTreeMap<String, LoadedList> {
    let mut lists = BTreeMap::new();
    let net = |s: &str| s.parse().unwrap();
    lists.insert("bad".to_string(), LoadedList { name: "bad".into(), nets: vec![net("203.0.113.0/24")].into(), ..LoadedList::default() });
    lists.insert("doh".to_string(), LoadedList { name: "doh".into(), nets: vec![net("1.1.1.1"), net("8.8.8.0/24")].into(), ..LoadedList::default() });
    lists
}

fn bypass_engine(mode: Mode) -> Engine {
    let mut e = Engine::new(Policy::new(bypass_config(mode, crate::config::DnsBypass::Block), bypass_lists()), State::new(), 1000);
    e.net.link(3, "br-lan");
    e.net.link(4, "wan");
    e.net.addr(3, ip("192.168.7.1"), 24);
    e.net.addr(4, ip("192.0.2.1"), 24);
    let mut fx = Vec::new();
    e.on_neighbour(3, ip("192.168.7.11"), Some(CAM), false, 1000, &mut fx);
    e.on_neighbour(3, ip("192.168.7.12"), Some(PHONE), false, 1000, &mut fx);
    e
}

fn to(src: &str, dst: &str, proto: u8, dport: u16) -> Flow {
    Flow { src: ip(src), dst: ip(dst), proto, sport: 40000, dport }
}

#[test]
fn bypass_members_follow_profiles_and_are_rebuilt_not_persisted() {
    use crate::config::DnsBypass;
    let e = bypass_engine(Mode::Enforce);
    // The configured phone is in from the start (the table is built with it);
    // the camera's profile only alerts.
    let all = e.all_elements(1000);
    assert!(all.contains(&(Elem::BypassMac(PHONE), None)), "{all:?}");
    assert!(!all.iter().any(|(el, _)| *el == Elem::BypassMac(CAM)));
    assert!(e.persisted_elements().is_empty(), "derived, never persisted");
    let doh: Vec<_> = e.bypass_layout().expect("a block profile").ranges().collect();
    assert_eq!(doh, [(ip("1.1.1.1"), ip("1.1.1.1")), (ip("8.8.8.0"), ip("8.8.8.255"))]);
    // A device that shows up in the block profile (the default profile here) gets its element once.
    let mut c = bypass_config(Mode::Enforce, DnsBypass::Block);
    c.defaults.profile = "phone".into();
    let mut e = Engine::new(Policy::new(c, bypass_lists()), State::new(), 1000);
    e.net.link(3, "br-lan");
    e.net.addr(3, ip("192.168.7.1"), 24);
    let other = Mac([2, 0, 0, 0, 7, 9]);
    let mut fx = Vec::new();
    e.on_neighbour(3, ip("192.168.7.19"), Some(other), false, 1000, &mut fx);
    assert_eq!(sets(&fx), [SetChange::Add { elem: Elem::BypassMac(other), timeout: None }]);
    let mut fx = Vec::new();
    e.on_neighbour(3, ip("192.168.7.20"), Some(other), false, 1001, &mut fx);
    assert!(sets(&fx).is_empty(), "{fx:?}");
    // Reloaded into alert: every element goes (the configured camera's too,
    // in the default profile here), and the table loses the chains.
    let mut fx = Vec::new();
    e.reload(Policy::new(bypass_config(Mode::Enforce, DnsBypass::Alert), bypass_lists()), 1002, &mut fx);
    let mut s = sets(&fx);
    s.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(s, [SetChange::Delete(Elem::BypassMac(CAM)), SetChange::Delete(Elem::BypassMac(PHONE)), SetChange::Delete(Elem::BypassMac(other))]);
    assert!(e.bypass_layout().is_none());
    assert!(!e.all_elements(1002).iter().any(|(el, _)| matches!(el, Elem::BypassMac(_))));
    // Monitor mode never touches traffic: no elements, the chains stay.
    let mut fx = Vec::new();
    e.reload(Policy::new(bypass_config(Mode::Monitor, DnsBypass::Block), bypass_lists()), 1003, &mut fx);
    assert!(sets(&fx).is_empty(), "{fx:?}");
    assert!(e.bypass_layout().is_some());
}

#[test]
fn bypass_alert_profile_alerts_once_and_judges_the_flow_as_usual() {
    let mut e = bypass_engine(Mode::Enforce);
    let mut fx = Vec::new();
    assert_eq!(e.on_flow(&to("192.168.7.11", "9.9.9.9", 17, 53), 1001, &mut fx), FlowOutcome::Judged(Verdict::Allow));
    assert_eq!(
        logs(&fx),
        ["ALERT device=02:00:00:00:07:01 name=living-room-camera ip=192.168.7.11 dst=9.9.9.9 proto=udp dport=53 rule=dns_bypass profile=iot"]
    );
    assert!(sets(&fx).is_empty());
    // Suppressed per device and destination, not per port.
    let mut fx = Vec::new();
    e.on_flow(&to("192.168.7.11", "9.9.9.9", 6, 853), 1002, &mut fx);
    assert!(logs(&fx).is_empty(), "{fx:?}");
    // 853 elsewhere, and 443 to a listed DoH endpoint; 443 elsewhere is no bypass.
    let mut fx = Vec::new();
    e.on_flow(&to("192.168.7.11", "9.9.9.10", 6, 853), 1002, &mut fx);
    e.on_flow(&to("192.168.7.11", "8.8.8.8", 6, 443), 1002, &mut fx);
    e.on_flow(&to("192.168.7.11", "9.9.9.11", 6, 443), 1002, &mut fx);
    e.on_flow(&to("192.168.7.11", "9.9.9.12", 1, 53), 1002, &mut fx);
    let l = logs(&fx);
    assert_eq!(l.len(), 2, "{l:?}");
    assert!(l[0].starts_with("ALERT ") && l[0].contains("dst=9.9.9.10 proto=tcp dport=853 rule=dns_bypass"), "{l:?}");
    assert!(l[1].contains("dst=8.8.8.8 proto=tcp dport=443 rule=dns_bypass"), "{l:?}");
    // The resolver is on a deny list: the bypass line, and the block as usual.
    let mut fx = Vec::new();
    assert_eq!(e.on_flow(&to("192.168.7.11", "203.0.113.53", 17, 53), 1003, &mut fx), FlowOutcome::Judged(Verdict::Block));
    let l = logs(&fx);
    assert!(l[0].starts_with("ALERT ") && l[0].contains("rule=dns_bypass"), "{l:?}");
    assert!(l[1].starts_with("BLOCK ") && l[1].contains("rule=list:bad"), "{l:?}");
    // The router's own resolver is no bypass (never judged at all).
    let mut fx = Vec::new();
    assert_eq!(e.on_flow(&to("192.168.7.11", "192.168.7.1", 17, 53), 1004, &mut fx), FlowOutcome::Ignored);
    assert_eq!(e.on_flow(&to("192.168.7.11", "192.0.2.1", 17, 53), 1004, &mut fx), FlowOutcome::Ignored);
    assert!(fx.is_empty());
}

#[test]
fn bypass_block_profile_redirected_query_is_logged_not_judged() {
    let mut e = bypass_engine(Mode::Enforce);
    let mut fx = Vec::new();
    // Redirected to the router: its conntrack entry still says 203.0.113.53,
    // a denied address, which the query never reached.
    assert_eq!(e.on_flow(&to("192.168.7.12", "203.0.113.53", 17, 53), 1001, &mut fx), FlowOutcome::Judged(Verdict::Block));
    assert_eq!(logs(&fx), ["BLOCK device=02:00:00:00:07:02 ip=192.168.7.12 dst=203.0.113.53 proto=udp dport=53 rule=dns_bypass profile=phone action=redirect"]);
    assert!(sets(&fx).is_empty() && !fx.iter().any(|f| matches!(f, Effect::Cut(_))), "{fx:?}");
    assert_eq!(e.block_count(), 0);
    // The same again: suppressed.
    let mut fx = Vec::new();
    e.on_flow(&to("192.168.7.12", "203.0.113.53", 6, 53), 1002, &mut fx);
    assert!(fx.is_empty(), "{fx:?}");
    // An 853 flow conntrack saw got past a missing element: back in, cut.
    let f = to("192.168.7.12", "9.9.9.9", 6, 853);
    let mut fx = Vec::new();
    assert_eq!(e.on_flow(&f, 1003, &mut fx), FlowOutcome::Judged(Verdict::Block));
    assert_eq!(sets(&fx), [SetChange::Add { elem: Elem::BypassMac(PHONE), timeout: None }]);
    assert!(fx.contains(&Effect::Cut(Cut::Flow(f))));
    assert!(logs(&fx)[0].starts_with("BLOCK ") && !logs(&fx)[0].contains("action="), "{fx:?}");
    // 443 to an unlisted address is an ordinary flow.
    let mut fx = Vec::new();
    assert_eq!(e.on_flow(&to("192.168.7.12", "9.9.9.9", 6, 443), 1003, &mut fx), FlowOutcome::Judged(Verdict::Allow));
    assert!(fx.is_empty(), "{fx:?}");
}

#[test]
fn bypass_cut_packets_are_block_lines_suppressed_per_destination() {
    let mut e = bypass_engine(Mode::Enforce);
    let b = BypassAttempt { mac: PHONE, flow: to("192.168.7.12", "1.1.1.1", 6, 443) };
    let mut fx = Vec::new();
    e.on_bypass(&b, 1001, &mut fx);
    e.on_bypass(&b, 1002, &mut fx);
    e.on_bypass(&BypassAttempt { mac: PHONE, flow: to("192.168.7.12", "1.1.1.1", 17, 853) }, 1002, &mut fx);
    assert_eq!(logs(&fx), ["BLOCK device=02:00:00:00:07:02 ip=192.168.7.12 dst=1.1.1.1 proto=tcp dport=443 rule=dns_bypass profile=phone"]);
    assert_eq!((e.counters.dns_bypass_cut, e.counters.alerts_suppressed), (3, 2));
    // After alert_interval, again; an odd destination (not internet) never.
    let mut fx = Vec::new();
    e.on_bypass(&b, 1001 + 3600, &mut fx);
    e.on_bypass(&BypassAttempt { mac: PHONE, flow: to("192.168.7.12", "192.168.7.1", 6, 853) }, 5000, &mut fx);
    assert_eq!(logs(&fx).len(), 1, "{fx:?}");
}

#[test]
fn bypass_in_monitor_mode_would_block_and_judges_as_usual() {
    let mut e = bypass_engine(Mode::Monitor);
    assert!(!e.all_elements(1000).iter().any(|(el, _)| matches!(el, Elem::BypassMac(_))));
    let mut fx = Vec::new();
    assert_eq!(e.on_flow(&to("192.168.7.12", "203.0.113.53", 17, 53), 1001, &mut fx), FlowOutcome::Judged(Verdict::Block));
    let l = logs(&fx);
    assert!(l[0].starts_with("WOULD-BLOCK ") && l[0].contains("rule=dns_bypass profile=phone") && !l[0].contains("action="), "{l:?}");
    assert!(l[1].starts_with("WOULD-BLOCK ") && l[1].contains("rule=list:bad"), "{l:?}");
    assert!(sets(&fx).is_empty());
}

#[test]
fn bypass_allowed_changes_nothing() {
    use crate::config::DnsBypass;
    let mut e = Engine::new(Policy::new(bypass_config(Mode::Enforce, DnsBypass::Allow), bypass_lists()), State::new(), 1000);
    e.net.link(3, "br-lan");
    e.net.addr(3, ip("192.168.7.1"), 24);
    let mut fx = Vec::new();
    e.on_neighbour(3, ip("192.168.7.12"), Some(PHONE), false, 1000, &mut fx);
    assert!(sets(&fx).is_empty());
    let mut fx = Vec::new();
    for f in [to("192.168.7.12", "9.9.9.9", 17, 53), to("192.168.7.12", "9.9.9.9", 6, 853), to("192.168.7.12", "1.1.1.1", 6, 443)] {
        assert_eq!(e.on_flow(&f, 1001, &mut fx), FlowOutcome::Judged(Verdict::Allow));
    }
    assert!(fx.is_empty(), "{fx:?}");
    assert!(e.bypass_layout().is_none());
}

#[test]
fn rule_dns_bypass_round_trips() {
    assert_eq!(Rule::DnsBypass.to_string(), "dns_bypass");
    assert_eq!("dns_bypass".parse::<Rule>(), Ok(Rule::DnsBypass));
}

#[test]
fn bypass_cut_selects_flows_that_go_around_the_resolver() {
    use crate::config::DnsBypass;
    let mut c = bypass_config(Mode::Enforce, DnsBypass::Block);
    c.defaults.profile = "phone".into();
    let mut e = Engine::new(Policy::new(c, bypass_lists()), State::new(), 1000);
    e.net.link(3, "br-lan");
    e.net.addr(3, ip("192.168.7.1"), 24);
    let other = Mac([2, 0, 0, 0, 7, 9]);
    let mut fx = Vec::new();
    e.on_neighbour(3, ip("192.168.7.19"), Some(other), false, 1000, &mut fx);
    // Joining the profile cuts what its element cannot catch.
    let cut = Cut::Bypass(vec![ip("192.168.7.19")]);
    assert!(fx.contains(&Effect::Cut(cut.clone())), "{fx:?}");
    let direct = to("192.168.7.19", "9.9.9.9", 17, 53);
    let direct_reply = to("9.9.9.9", "192.168.7.19", 17, 40000);
    let redirected_reply = to("192.168.7.1", "192.168.7.19", 17, 40000);
    assert!(e.cut_matches(&cut, &direct, Some(&direct_reply)));
    assert!(!e.cut_matches(&cut, &direct, Some(&redirected_reply)), "already answered by the router");
    assert!(e.cut_matches(&cut, &to("192.168.7.19", "9.9.9.9", 6, 853), None));
    assert!(e.cut_matches(&cut, &to("192.168.7.19", "1.1.1.1", 6, 443), None));
    assert!(!e.cut_matches(&cut, &to("192.168.7.19", "9.9.9.9", 6, 443), None), "not a listed endpoint");
    assert!(!e.cut_matches(&cut, &to("192.168.7.20", "9.9.9.9", 6, 853), None), "another device");
    assert!(!e.cut_matches(&cut, &to("192.168.7.19", "192.168.7.1", 17, 53), None), "the router's resolver");
    // At start: every member's.
    let mut fx = Vec::new();
    e.cut_bypassing_all(&mut fx);
    assert_eq!(fx, [Effect::Cut(cut)]);
}
