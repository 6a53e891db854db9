//! Tests of the whole pipeline (reader → validator) for both syntaxes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::policy::selector::Selector;
use crate::policy::verdict::Verdict;

const EXAMPLE_TOML: &str = include_str!("../../../etc/leash.toml");
const EXAMPLE_UCI: &str = include_str!("../../../etc/config/leash");

fn toml(text: &str) -> Config {
    match parse_toml(Path::new("t.toml"), text) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

fn uci(text: &str) -> Config {
    match parse_uci(Path::new("leash"), text) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

/// (line, key) of every error, in order.
fn toml_errs(text: &str) -> Vec<(usize, String)> {
    pairs(parse_toml(Path::new("t.toml"), text).expect_err("should fail"))
}

fn uci_errs(text: &str) -> Vec<(usize, String)> {
    pairs(parse_uci(Path::new("leash"), text).expect_err("should fail"))
}

fn pairs(e: ConfigErrors) -> Vec<(usize, String)> {
    e.0.iter().map(|e| (e.line, e.key.clone())).collect()
}

fn one_err(r: Result<Config, ConfigErrors>) -> ConfigError {
    let e = r.expect_err("should fail");
    assert_eq!(e.0.len(), 1, "{e}");
    e.0[0].clone()
}

fn p(s: &str) -> (usize, String) {
    let (l, k) = s.split_once(' ').unwrap_or(("0", s));
    (l.parse().unwrap_or(0), k.to_string())
}

fn sel(s: &str) -> Selector {
    s.parse().unwrap_or(Selector::Any)
}

#[test]
fn spec_example_parses() {
    let c = toml(EXAMPLE_TOML);
    assert_eq!(c.source, PathBuf::from("t.toml"));
    assert_eq!(c.daemon.mode, Mode::Enforce);
    assert_eq!(c.daemon.lan, ["br-lan"]);
    assert_eq!(c.daemon.alert_interval, Duration::from_secs(3600));
    assert_eq!(c.daemon.dns_nflog_group, 5335);
    assert!(!c.daemon.keep_on_exit);
    assert_eq!(c.geoip.country_db.as_deref(), Some(Path::new("/usr/share/leash/country.mmdb")));
    assert_eq!(c.geoip.asn_db.as_deref(), Some(Path::new("/usr/share/leash/asn.mmdb")));
    assert_eq!(c.defaults.profile, "iot");
    assert_eq!(c.defaults.learn, Duration::ZERO);
    assert_eq!(c.profiles.len(), 2, "no implicit default profile when defaults.profile exists");
    let iot = &c.profiles["iot"];
    assert_eq!((iot.unlisted, iot.denied), (Verdict::Block, Verdict::Quarantine));
    assert_eq!(iot.deny, ["telemetry", "cn"]);
    assert_eq!(iot.upload_alert, None);
    let phone = &c.profiles["phone"];
    assert_eq!((phone.unlisted, phone.denied), (Verdict::Allow, Verdict::Block));
    assert_eq!(phone.upload_alert, Some(50_000_000));
    assert_eq!(c.lists["telemetry"].files, [PathBuf::from("/etc/leash/lists/vendor-telemetry.txt")]);
    assert!(c.lists["telemetry"].selectors.is_empty());
    assert_eq!(c.lists["cn"].selectors, [Selector::Country(*b"CN")]);
    assert_eq!(c.devices.len(), 1);
    let d = &c.devices[0];
    assert_eq!(d.mac.to_string(), "aa:bb:cc:dd:ee:ff");
    assert_eq!(d.name.as_deref(), Some("living-room-camera"));
    assert_eq!(d.profile.as_deref(), Some("iot"));
    assert_eq!(d.consent, [sel("ring.com"), sel("52.94.0.0/16")]);
}

#[test]
fn uci_example_equals_toml_example() {
    let t = toml(EXAMPLE_TOML);
    let mut u = uci(EXAMPLE_UCI);
    assert_eq!(u.source, PathBuf::from("leash"));
    u.source = t.source.clone();
    assert_eq!(t, u);
}

#[test]
fn empty_file_gives_every_default() {
    for c in [toml(""), uci("# nothing\n")] {
        let d = &c.daemon;
        assert_eq!(d.mode, Mode::Enforce);
        assert_eq!(d.lan, ["br-lan"]);
        assert_eq!(d.alert_interval, Duration::from_secs(3600));
        assert_eq!(d.dns_nflog_group, 5335);
        assert!(!d.keep_on_exit);
        assert_eq!(d.leases, PathBuf::from("/tmp/dhcp.leases"));
        assert_eq!(d.state_dir, PathBuf::from("/etc/leash/state"));
        assert_eq!(d.socket, PathBuf::from("/var/run/leash.sock"));
        assert_eq!(d.nft_table, "leash");
        assert_eq!(d.syslog, PathBuf::from("/dev/log"));
        assert_eq!(c.geoip, GeoipConfig::default());
        assert_eq!(c.defaults.profile, "default");
        assert_eq!(c.defaults.learn, Duration::ZERO);
        let p = &c.profiles["default"];
        assert_eq!((p.unlisted, p.denied, p.deny.len(), p.upload_alert), (Verdict::Allow, Verdict::Block, 0, None));
        assert!(c.lists.is_empty() && c.devices.is_empty());
    }
}

#[test]
fn section_defaults() {
    let c = toml("[profile.x]\n[list.l]\n[[device]]\nmac = \"02:00:00:00:00:01\"\n");
    let x = &c.profiles["x"];
    assert_eq!((x.unlisted, x.denied, x.upload_alert), (Verdict::Allow, Verdict::Block, None));
    assert!(x.deny.is_empty());
    assert!(c.lists["l"].files.is_empty() && c.lists["l"].selectors.is_empty());
    let d = &c.devices[0];
    assert_eq!((d.name.as_deref(), d.profile.as_deref(), d.consent.len()), (None, None, 0));
    assert!(c.profiles.contains_key("default"));
}

#[test]
fn explicit_default_profile_is_kept() {
    let c = toml("[profile.default]\nunlisted = \"alert\"\n");
    assert_eq!(c.profiles["default"].unlisted, Verdict::Alert);
    assert_eq!(c.profiles.len(), 1);
}

#[test]
fn toml_value_forms() {
    let c = toml(
        r#"
[daemon]
mode = "monitor"
lan = ["br-lan", "wlan0"]
alert_interval = 90          # integer seconds
dns_nflog_group = 1
keep_on_exit = true
leases = "/tmp/l"
state_dir = "/tmp/s"
socket = "/tmp/sock"
nft_table = "leash_test2"
syslog = "/tmp/log"
[defaults]
learn = "1h30m"
[profile.default]
upload_alert = 1024
[profile.big]
upload_alert = "1.5GiB"
[list.a]
selectors = ["=Exact.example.com", "asn:AS4808", "any", "2001:db8::/32"]
"#,
    );
    let d = &c.daemon;
    assert_eq!(d.mode, Mode::Monitor);
    assert_eq!(d.lan, ["br-lan", "wlan0"]);
    assert_eq!(d.alert_interval, Duration::from_secs(90));
    assert_eq!(d.dns_nflog_group, 1);
    assert!(d.keep_on_exit);
    assert_eq!(d.leases, PathBuf::from("/tmp/l"));
    assert_eq!(d.state_dir, PathBuf::from("/tmp/s"));
    assert_eq!(d.socket, PathBuf::from("/tmp/sock"));
    assert_eq!(d.nft_table, "leash_test2");
    assert_eq!(d.syslog, PathBuf::from("/tmp/log"));
    assert_eq!(c.defaults.learn, Duration::from_secs(5400));
    assert_eq!(c.profiles["default"].upload_alert, Some(1024));
    assert_eq!(c.profiles["big"].upload_alert, Some(1_610_612_736));
    assert_eq!(c.lists["a"].selectors, [sel("=exact.example.com"), Selector::Asn(4808), Selector::Any, sel("2001:db8::/32")]);
}

#[test]
fn uci_value_forms() {
    let c = uci("config daemon 'main'\n\
         \toption mode monitor\n\
         \toption lan 'br-lan'\n\
         \toption keep_on_exit 'yes'\n\
         \toption dns_nflog_group \"42\"\n\
         \toption alert_interval '120'\n\
         config profile 'p'\n\
         \toption deny 'l'\n\
         config list 'l'\n\
         \toption selectors 'any'\n\
         config device 'cam'\n\
         \toption mac '02:00:00:00:00:01'\n\
         config device\n\
         \toption mac '02:00:00:00:00:02'\n\
         \toption name 'tv'\n");
    assert_eq!(c.daemon.mode, Mode::Monitor);
    assert_eq!(c.daemon.lan, ["br-lan"], "option accepted as a one-item list");
    assert!(c.daemon.keep_on_exit);
    assert_eq!(c.daemon.dns_nflog_group, 42);
    assert_eq!(c.daemon.alert_interval, Duration::from_secs(120));
    assert_eq!(c.profiles["p"].deny, ["l"]);
    assert_eq!(c.lists["l"].selectors, [Selector::Any]);
    assert_eq!(c.devices[0].name.as_deref(), Some("cam"), "section name names the device");
    assert_eq!(c.devices[1].name.as_deref(), Some("tv"));
}

#[test]
fn uci_bools() {
    for (s, want) in
        [("1", true), ("0", false), ("true", true), ("false", false), ("yes", true), ("no", false), ("on", true), ("off", false)]
    {
        let c = uci(&format!("config daemon\n\toption keep_on_exit '{s}'\n"));
        assert_eq!(c.daemon.keep_on_exit, want, "{s}");
    }
    let e = one_err(parse_uci(Path::new("leash"), "config daemon\n\toption keep_on_exit 'maybe'\n"));
    assert_eq!((e.line, e.key.as_str()), (2, "daemon.keep_on_exit"));
}

#[test]
fn toml_syntax_error_has_line() {
    let e = toml_errs("[daemon]\nmode = \"enforce\"\nlan = [br-lan]\n");
    assert_eq!(e, [p("3 syntax")]);
    let e = toml_errs("[daemon]\nmode = \"a\"\nmode = \"b\"\n");
    assert_eq!(e, [p("3 syntax")]);
}

#[test]
fn every_error_kind_with_line_and_key() {
    let cases: &[(&str, &str)] = &[
        ("[bogus]\nx = 1\n", "1 bogus"),
        ("[daemon]\nmood = \"enforce\"\n", "2 daemon.mood"),
        ("stray = 1\n", "1 stray"),
        ("daemon = 1\n", "1 daemon"),
        ("[device]\nmac = \"02:00:00:00:00:01\"\n", "1 device"),
        ("[[daemon]]\n", "1 daemon"),
        ("[profile]\nx = 1\n", "2 profile.x"),
        ("[daemon]\nmode = \"enforcing\"\n", "2 daemon.mode"),
        ("[daemon]\nmode = 1\n", "2 daemon.mode"),
        ("[daemon]\nlan = \"br-lan\"\n", "2 daemon.lan"),
        ("[daemon]\nlan = []\n", "2 daemon.lan"),
        ("[daemon]\nlan = [1]\n", "2 daemon.lan"),
        ("[daemon]\nlan = [\n\"br-lan\",\n\"has space\"]\n", "4 daemon.lan"),
        ("[daemon]\nalert_interval = \"1 hour\"\n", "2 daemon.alert_interval"),
        ("[daemon]\nalert_interval = -5\n", "2 daemon.alert_interval"),
        ("[daemon]\nalert_interval = 1.5\n", "2 daemon.alert_interval"),
        ("[daemon]\ndns_nflog_group = 0\n", "2 daemon.dns_nflog_group"),
        ("[daemon]\ndns_nflog_group = 65536\n", "2 daemon.dns_nflog_group"),
        ("[daemon]\ndns_nflog_group = \"5335\"\n", "2 daemon.dns_nflog_group"),
        ("[daemon]\nkeep_on_exit = \"true\"\n", "2 daemon.keep_on_exit"),
        ("[daemon]\nleases = \"\"\n", "2 daemon.leases"),
        ("[daemon]\nnft_table = \"1leash\"\n", "2 daemon.nft_table"),
        ("[daemon]\nnft_table = \"le-ash\"\n", "2 daemon.nft_table"),
        ("[daemon]\nnft_table = \"a23456789012345678901234567890123\"\n", "2 daemon.nft_table"),
        ("[geoip]\ncountry_db = 5\n", "2 geoip.country_db"),
        ("[geoip]\ncity_db = \"x\"\n", "2 geoip.city_db"),
        ("[defaults]\nprofile = \"nope\"\n", "2 defaults.profile"),
        ("[defaults]\nprofile = \"a b\"\n", "2 defaults.profile"),
        ("[defaults]\nlearn = \"forever\"\n", "2 defaults.learn"),
        ("[profile.\"a b\"]\n", "1 profile.a b"),
        ("[profile.x]\nunlisted = \"deny\"\n", "2 profile.x.unlisted"),
        ("[profile.x]\ndenied = \"Block\"\n", "2 profile.x.denied"),
        ("[profile.x]\ndeny = [\"missing\"]\n", "2 profile.x.deny"),
        ("[profile.x]\ndeny = \"l\"\n[list.l]\n", "2 profile.x.deny"),
        ("[profile.x]\nupload_alert = \"50 megs\"\n", "2 profile.x.upload_alert"),
        ("[profile.x]\nupload_alert = 0\n", "2 profile.x.upload_alert"),
        ("[profile.x]\nverdict = \"allow\"\n", "2 profile.x.verdict"),
        ("[list.l]\nfiles = \"/x\"\n", "2 list.l.files"),
        ("[list.l]\nselectors = [\n  \"ok.example\",\n  \"country:CHN\",\n]\n", "4 list.l.selectors"),
        ("[list.l]\ndomains = []\n", "2 list.l.domains"),
        ("[[device]]\nname = \"cam\"\n", "1 device[1].mac"),
        ("[[device]]\nmac = \"zz:bb:cc:dd:ee:ff\"\n", "2 device[1].mac"),
        ("[[device]]\nmac = \"01:00:5e:00:00:01\"\n", "2 device[1].mac"),
        ("[[device]]\nmac = \"02:00:00:00:00:01\"\nname = \"\"\n", "3 device[1].name"),
        ("[[device]]\nmac = \"02:00:00:00:00:01\"\nname = \"192.168.1.5\"\n", "3 device[1].name"),
        ("[[device]]\nmac = \"02:00:00:00:00:01\"\nprofile = \"nope\"\n", "3 device[1].profile"),
        ("[[device]]\nmac = \"02:00:00:00:00:01\"\nconsent = [\"bad selector\"]\n", "3 device[1].consent"),
        ("[[device]]\nmac = \"02:00:00:00:00:01\"\nconsent = \"ring.com\"\n", "3 device[1].consent"),
        ("[[device]]\nmac = \"02:00:00:00:00:01\"\nowner = \"me\"\n", "3 device[1].owner"),
        ("[[device]]\nmac = \"02:00:00:00:00:01\"\n[[device]]\nmac = \"02:00:00:00:00:01\"\n", "4 device[2].mac"),
        (
            "[[device]]\nmac = \"02:00:00:00:00:01\"\nname = \"a\"\n[[device]]\nmac = \"02:00:00:00:00:02\"\nname = \"a\"\n",
            "6 device[2].name",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(toml_errs(text), [p(want)], "{text}");
    }
}

#[test]
fn messages_say_what_is_wrong() {
    let e = one_err(parse_toml(Path::new("/etc/leash/leash.toml"), "[daemon]\nlan = \"br-lan\"\n"));
    assert_eq!(e.message, "expected a list of strings, found a string");
    assert_eq!(e.to_string(), "/etc/leash/leash.toml:2: daemon.lan: expected a list of strings, found a string");
    let e = one_err(parse_toml(Path::new("t"), "[daemon]\nfoo = 1\n"));
    assert!(e.message.starts_with("unknown key"), "{}", e.message);
    let e =
        one_err(parse_toml(Path::new("t"), "[[device]]\nmac = \"02:00:00:00:00:01\"\n[[device]]\nmac = \"02:00:00:00:00:01\"\n"));
    assert!(e.message.contains("device[1] on line 2"), "{}", e.message);
}

#[test]
fn all_errors_reported_at_once() {
    let e = toml_errs("[daemon]\nmode = \"loud\"\n[profile.iot]\ndeny = [\"nope\"]\n[[device]]\nmac = \"nonsense\"\n");
    assert_eq!(e, [p("2 daemon.mode"), p("4 profile.iot.deny"), p("6 device[1].mac")]);
    // Errors come in file order even though TOML tables are read by key.
    let e = toml_errs("[profile.z]\nunlisted = \"x\"\n[profile.a]\nunlisted = \"y\"\n[daemon]\nzzz = 1\n");
    assert_eq!(e, [p("2 profile.z.unlisted"), p("4 profile.a.unlisted"), p("6 daemon.zzz")]);
}

#[test]
fn shape_and_schema_errors_together() {
    let e = toml_errs("[device]\nmac = \"x\"\n[daemon]\nmode = \"x\"\n");
    assert_eq!(e, [p("1 device"), p("4 daemon.mode")]);
}

#[test]
fn uci_errors() {
    // Malformed lines are all reported, with no schema errors mixed in.
    let e = uci_errs("option mode 'x'\nconfig daemon\n\toption mode 'enforce\n\tfoo bar\n");
    assert_eq!(e, [p("1 syntax"), p("3 syntax"), p("4 syntax")]);
    let cases: &[(&str, &str)] = &[
        ("config daemon\n\toption mode 'on'\n", "2 daemon.mode"),
        ("config daemon\n\toption mode 'enforce'\n\toption mode 'monitor'\n", "3 daemon.mode"),
        ("config daemon\nconfig daemon\n", "2 daemon"),
        ("config profile\n", "1 profile"),
        ("config profile 'a'\nconfig profile 'a'\n", "2 profile.a"),
        ("config profile 'a.b'\n", "1 profile.a.b"),
        ("config frob\n", "1 frob"),
        ("config daemon\n\toption dns_nflog_group 'x'\n", "2 daemon.dns_nflog_group"),
        ("config daemon\n\toption dns_nflog_group '70000'\n", "2 daemon.dns_nflog_group"),
        ("config daemon\n\tlist mode 'enforce'\n", "2 daemon.mode"),
        ("config list 'l'\n\tlist selectors 'any'\n\tlist selectors 'bad one'\n", "3 list.l.selectors"),
        ("config device\n\toption name 'x'\n", "1 device[1].mac"),
        ("config device\n\toption mac '02:00:00:00:00:01'\nconfig device\n\toption mac 'oops'\n", "4 device[2].mac"),
    ];
    for (text, want) in cases {
        assert_eq!(uci_errs(text), [p(want)], "{text}");
    }
}

#[test]
fn uci_three_mistakes_three_errors() {
    let e = uci_errs(
        "config daemon\n\toption mode 'loud'\nconfig profile 'iot'\n\tlist deny 'nope'\nconfig device\n\toption mac 'nonsense'\n",
    );
    assert_eq!(e, [p("2 daemon.mode"), p("4 profile.iot.deny"), p("6 device[1].mac")]);
}

#[test]
fn load_reads_by_extension() {
    let dir = std::env::temp_dir().join(format!("leash-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let t = dir.join("leash.toml");
    let u = dir.join("leash");
    std::fs::write(&t, EXAMPLE_TOML).expect("write");
    std::fs::write(&u, EXAMPLE_UCI).expect("write");
    let ct = load(Some(&t)).expect("toml loads");
    let cu = load(Some(&u)).expect("uci loads");
    assert_eq!(ct.source, t);
    assert_eq!(cu.source, u);
    assert_eq!(ct.devices, cu.devices);

    let missing = dir.join("missing.toml");
    let e = one_err(load(Some(&missing)));
    assert_eq!((e.file, e.line), (missing, 0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hostile_input_is_an_error_not_a_panic() {
    let junk: String = String::from_utf8_lossy(&(0..=255u8).cycle().take(8192).collect::<Vec<u8>>()).into_owned();
    let long = format!("[daemon]\nmode = \"{}\"\n", "x".repeat(1_000_000));
    for text in [junk.as_str(), long.as_str(), "[daemon]\r\nmode = \"enforce\"\r\n", "\0", "'", "\"", "[[", "config 'x"] {
        let _ = parse_toml(Path::new("t.toml"), text);
        let _ = parse_uci(Path::new("leash"), text);
    }
    // CRLF line ends are fine in both syntaxes.
    assert_eq!(toml("[daemon]\r\nmode = \"monitor\"\r\n").daemon.mode, Mode::Monitor);
    assert_eq!(uci("config daemon\r\n\toption mode 'monitor'\r\n").daemon.mode, Mode::Monitor);
}

/// The /etc/config/leash the OpenWrt package installs: safe on a first
/// install, and its commented examples are valid once uncommented.
const PACKAGE_UCI: &str = include_str!("../../../openwrt-package/leash/files/leash.config");

#[test]
fn openwrt_package_default_config_is_monitor_only() {
    let c = uci(PACKAGE_UCI);
    assert_eq!(c.daemon.mode, Mode::Monitor);
    assert_eq!(c.daemon.lan, ["br-lan"]);
    assert!(!c.daemon.keep_on_exit);
    assert_eq!(c.defaults.profile, "default");
    assert!(c.devices.is_empty());
    assert!(c.lists.is_empty());
    assert_eq!(c.profiles["default"].unlisted, Verdict::Allow);
}

#[test]
fn openwrt_package_config_examples_parse_when_uncommented() {
    let uncommented: String = PACKAGE_UCI
        .lines()
        .map(|l| if l.starts_with("#config") || l.starts_with("#\t") { &l[1..] } else { l })
        .collect::<Vec<_>>()
        .join("\n");
    let c = uci(&uncommented);
    assert_eq!(c.profiles["iot"].denied, Verdict::Quarantine);
    assert_eq!(c.lists["telemetry"].files, [PathBuf::from("/etc/leash/lists/vendor-telemetry.txt")]);
    assert_eq!(c.devices.len(), 1);
    assert_eq!(c.devices[0].profile.as_deref(), Some("iot"));
    assert_eq!(c.devices[0].consent.len(), 2);
}

#[test]
fn conntrack_buffer_is_auto_or_a_bounded_size() {
    use crate::config::ConntrackBuffer;
    assert_eq!(toml("").daemon.conntrack_buffer, ConntrackBuffer::Auto);
    assert_eq!(toml("[daemon]\nconntrack_buffer = \"auto\"\n").daemon.conntrack_buffer, ConntrackBuffer::Auto);
    assert_eq!(uci("config daemon\n\toption conntrack_buffer 'auto'\n").daemon.conntrack_buffer, ConntrackBuffer::Auto);
    assert_eq!(toml("[daemon]\nconntrack_buffer = \"8MiB\"\n").daemon.conntrack_buffer, ConntrackBuffer::Bytes(8 << 20));
    assert_eq!(uci("config daemon\n\toption conntrack_buffer '256KiB'\n").daemon.conntrack_buffer, ConntrackBuffer::Bytes(256 << 10));
    for bad in ["\"1kB\"", "\"Auto\"", "\"2GiB\"", "true"] {
        let e = toml_errs(&format!("[daemon]\nconntrack_buffer = {bad}\n"));
        assert_eq!(e.len(), 1, "{bad}");
        assert_eq!(e[0].0, 2);
        assert!(e[0].1.contains("daemon.conntrack_buffer"), "{e:?}");
    }
    let json = |b: ConntrackBuffer| serde_json::to_string(&b).unwrap_or_default();
    assert_eq!((json(ConntrackBuffer::Auto), json(ConntrackBuffer::Bytes(65536))), ("\"auto\"".into(), "65536".into()));
}

#[test]
fn auto_conntrack_buffer_scales_with_ram() {
    use crate::config::{auto_conntrack_buffer, meminfo_total, ConntrackBuffer};
    const MIB: u64 = 1 << 20;
    // MemTotal of a 128 MB router (the kernel keeps some): ≈1.9 MiB.
    assert_eq!(auto_conntrack_buffer(Some(122_000 * 1024)), 122_000 * 1024 / 64);
    for (ram, want) in [(256 * MIB, 4 * MIB), (512 * MIB, 8 * MIB), (4096 * MIB, 64 * MIB), (64 << 30, 64 * MIB), (32 * MIB, MIB), (0, MIB)] {
        assert_eq!(auto_conntrack_buffer(Some(ram)), want as usize, "{ram}");
    }
    assert_eq!(auto_conntrack_buffer(None), 2 * MIB as usize);
    assert_eq!(ConntrackBuffer::Auto.bytes(Some(512 * MIB)), 8 * MIB as usize);
    assert_eq!(ConntrackBuffer::Bytes(12345).bytes(Some(512 * MIB)), 12345);

    let meminfo = "MemTotal:         124516 kB\nMemFree:           50000 kB\n";
    assert_eq!(meminfo_total(meminfo), Some(124516 * 1024));
    assert_eq!(meminfo_total("MemFree: 1 kB\nMemTotal: 7\n"), Some(7));
    for bad in ["", "MemTotal:\n", "MemTotal: x kB\n", "MemTotal: 1 MB\n", "MemFree: 1 kB\n"] {
        assert_eq!(meminfo_total(bad), None, "{bad:?}");
    }
}

#[test]
fn list_urls_and_refresh() {
    let c = toml(
        "[list.x]\nfiles = [\"/etc/x.txt\"]\nselectors = [\"country:CN\"]\nurls = [\"https://example.org/native.xiaomi.txt\", \"http://192.0.2.1:8080/l?x=1\"]\nrefresh = \"2s\"\n[list.y]\nurls = [\"https://u:p@example.org/y\"]\n",
    );
    let x = &c.lists["x"];
    assert_eq!(x.urls, ["https://example.org/native.xiaomi.txt", "http://192.0.2.1:8080/l?x=1"]);
    assert_eq!((x.refresh, x.files.len(), x.selectors.len()), (Duration::from_secs(2), 1, 1));
    assert_eq!(c.lists["y"].refresh, DEFAULT_LIST_REFRESH, "24h by default");
    let u = uci("config list 'x'\n\tlist urls 'https://example.org/a'\n\tlist urls 'https://example.org/b'\n\toption refresh '1h'\nconfig list 'y'\n\toption urls 'http://example.org/c'\n");
    assert_eq!(u.lists["x"].urls, ["https://example.org/a", "https://example.org/b"]);
    assert_eq!(u.lists["x"].refresh, Duration::from_secs(3600));
    assert_eq!(u.lists["y"].urls, ["http://example.org/c"], "option accepted as a one-item list");
}

#[test]
fn bad_list_urls_and_refresh() {
    assert_eq!(
        toml_errs(
            "[list.x]\nurls = [\n  \"ftp://example.org/a\",\n  \"https://\",\n  \"https://example.org/a b\",\n  \"-o/etc/passwd\",\n  \"https://example.org/ok\",\n  \"https://example.org/ok\",\n]\nrefresh = \"0s\"\n[list.y]\nrefresh = \"1h\"\n[list.z]\nurls = \"https://example.org/\"\nrefresh = \"soon\"\n"
        ),
        [p("3 list.x.urls"), p("4 list.x.urls"), p("5 list.x.urls"), p("6 list.x.urls"), p("8 list.x.urls"), p("10 list.x.refresh"), p("12 list.y.refresh"), p("14 list.z.urls"), p("15 list.z.refresh")]
    );
    let many: Vec<String> = (0..=MAX_LIST_URLS).map(|i| format!("\"https://example.org/{i}\"")).collect();
    let e = one_err(parse_toml(Path::new("t.toml"), &format!("[list.x]\nurls = [{}]\n", many.join(", "))));
    assert_eq!((e.line, e.key.as_str()), (2, "list.x.urls"));
    assert!(e.message.contains("at most"), "{e}");
    let e = one_err(parse_uci(Path::new("leash"), "config list 'x'\n\tlist urls 'file:///etc/shadow'\n"));
    assert_eq!((e.file.as_path(), e.line, e.key.as_str()), (Path::new("leash"), 2, "list.x.urls"));
}

#[test]
fn notify_defaults_and_keys() {
    let c = toml("");
    assert_eq!(c.notify.exec, None);
    assert_eq!(c.notify.on, ["QUARANTINE", "BLOCK", "WOULD-QUARANTINE", "WOULD-BLOCK", "ALERT", "DEVICE"]);
    assert_eq!(c.notify.exec_timeout, Duration::from_secs(10));
    assert!(c.notify.mqtt.is_none());
    let c = toml(
        "[notify]\nexec = \"/etc/leash/notify.sh\"\non = [\"quarantine\", \"RELEASE\"]\nexec_timeout = \"3s\"\n\
         mqtt = \"mqtt://192.168.1.2\"\nmqtt_user = \"u\"\nmqtt_password = \"p\"\nmqtt_topic = \"home/leash\"\nmqtt_commands = true\n",
    );
    assert_eq!(c.notify.exec, Some(PathBuf::from("/etc/leash/notify.sh")));
    assert_eq!(c.notify.on, ["QUARANTINE", "RELEASE"]);
    assert!(c.notify.wants("RELEASE") && !c.notify.wants("BLOCK"));
    assert_eq!(c.notify.exec_timeout, Duration::from_secs(3));
    let m = c.notify.mqtt.clone().unwrap_or_else(|| panic!("{:?}", c.notify));
    assert_eq!((m.host.as_str(), m.port, m.user.as_deref(), m.password.as_deref()), ("192.168.1.2", 1883, Some("u"), Some("p")));
    assert_eq!((m.topic.as_str(), m.commands), ("home/leash", true));
    // The password never shows in what `leash check` prints.
    assert!(!serde_json::to_string(&c).unwrap_or_default().contains("\"p\""));
    let u = uci("config notify\n\toption exec '/x.sh'\n\tlist on 'BLOCK'\n\toption mqtt 'mqtt://b:1884'\n\toption mqtt_commands '1'\n");
    assert_eq!(u.notify.exec, Some(PathBuf::from("/x.sh")));
    assert_eq!(u.notify.on, ["BLOCK"]);
    let m = u.notify.mqtt.expect("mqtt");
    assert_eq!((m.host.as_str(), m.port, m.topic.as_str(), m.commands), ("b", 1884, "leash", true));
}

#[test]
fn notify_bad_keys_are_reported() {
    assert_eq!(
        toml_errs("[notify]\non = [\"QUARANTINE\", \"NOPE\"]\nexec_timeout = \"0s\"\nmqtt = \"mqtts://x\"\nmqtt_topic = \"a/#\"\nbogus = 1\n"),
        [p("2 notify.on"), p("3 notify.exec_timeout"), p("4 notify.mqtt"), p("5 notify.mqtt_topic"), p("6 notify.bogus")]
    );
    assert_eq!(toml_errs("[notify]\n[notify]\n").len(), 1);
}

#[test]
fn dns_hold_filter_and_bypass() {
    let c = toml(EXAMPLE_TOML);
    assert_eq!((c.daemon.dns_hold, c.daemon.dns_queue), (DnsHold::Auto, 5336));
    let phone = &c.profiles["phone"];
    assert_eq!((phone.dns_filter, phone.dns_bypass), (DnsFilter::Nxdomain, DnsBypass::Block));
    assert_eq!(phone.dns_bypass_lists, ["doh"]);
    let iot = &c.profiles["iot"];
    assert_eq!((iot.dns_filter, iot.dns_bypass), (DnsFilter::Off, DnsBypass::Alert), "the defaults");
    let c = uci("config daemon\n\toption dns_hold 'external'\n\toption dns_queue '7'\n");
    assert_eq!((c.daemon.dns_hold, c.daemon.dns_queue), (DnsHold::External, 7));
    assert_eq!(toml_errs("[daemon]\ndns_hold = \"yes\"\n"), [p("2 daemon.dns_hold")]);
    assert_eq!(toml_errs("[daemon]\ndns_queue = 70000\n"), [p("2 daemon.dns_queue")]);
    assert_eq!(toml_errs("[profile.a]\ndns_bypass = \"drop\"\ndns_filter = \"refused\"\n"), [p("2 profile.a.dns_bypass"), p("3 profile.a.dns_filter")]);
    assert_eq!(toml_errs("[profile.a]\ndns_bypass_lists = [\"nope\"]\n"), [p("2 profile.a.dns_bypass_lists")]);
    let e = one_err(parse_toml(Path::new("t.toml"), "[daemon]\ndns_hold = \"off\"\n[profile.a]\ndns_filter = \"nxdomain\"\n"));
    assert_eq!((e.line, e.key.as_str()), (4, "profile.a.dns_filter"));
    assert!(e.to_string().contains("dns_hold"), "{e}");
}
