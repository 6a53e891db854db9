//! Raw tree → `Config`: the one place that knows the schema (SPEC §3).
//! Every problem is collected, never just the first, so that `leash check`
//! shows the whole list in one go.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use super::raw::{RawDoc, RawOption, RawSection, RawValue, Syntax};
use super::units::{duration_secs, parse_duration, parse_size, MAX_DURATION_SECS};
use super::{Config, ConfigError, ConfigErrors, DaemonConfig, Defaults, DeviceConfig, GeoipConfig, ListDef, Mode, Profile};
use super::{DnsBypass, DnsFilter, DnsHold, DEFAULT_DNS_QUEUE};
use super::{ConntrackBuffer, MAX_CONNTRACK_BUFFER, MIN_CONNTRACK_BUFFER};
use super::{DEFAULT_LIST_REFRESH, MAX_LIST_URLS, MAX_URL_LEN, MIN_LIST_REFRESH};
use crate::mac::Mac;
use crate::policy::selector::Selector;
use crate::policy::verdict::Verdict;

/// Every section kind.
pub(crate) const KINDS: &[&str] = &["daemon", "geoip", "defaults", "notify", "profile", "list", "device"];
/// Kinds that carry a name: `[profile.NAME]`, `config profile 'NAME'`.
pub(crate) const NAMED_KINDS: &[&str] = &["profile", "list"];
/// Kinds that repeat: `[[device]]`.
pub(crate) const MULTI_KINDS: &[&str] = &["device"];

const DAEMON_KEYS: &[&str] =
    &["mode", "lan", "alert_interval", "dns_nflog_group", "keep_on_exit", "leases", "state_dir", "socket", "nft_table", "syslog", "conntrack_buffer", "dns_hold", "dns_queue"];
const GEOIP_KEYS: &[&str] = &["country_db", "asn_db"];
const DEFAULTS_KEYS: &[&str] = &["profile", "learn"];
const PROFILE_KEYS: &[&str] = &["unlisted", "denied", "deny", "upload_alert", "dns_filter", "dns_bypass", "dns_bypass_lists"];
const LIST_KEYS: &[&str] = &["files", "selectors", "urls", "refresh"];
const DEVICE_KEYS: &[&str] = &["mac", "name", "profile", "consent"];

#[path = "validate_notify.rs"]
mod notify;

/// The profile used when `defaults.profile` is not set; it need not be
/// configured (an implicit allow-everything profile stands in).
pub(crate) const DEFAULT_PROFILE: &str = "default";

pub(crate) fn validate(file: &Path, doc: RawDoc) -> Result<Config, ConfigErrors> {
    let mut v = Validator { file, syntax: doc.syntax, errors: doc.errors };

    // Sort sections by kind, catching unknown and duplicate ones.
    let mut singles: BTreeMap<&str, &RawSection> = BTreeMap::new();
    let mut profiles: Vec<(&str, &RawSection)> = Vec::new();
    let mut lists: Vec<(&str, &RawSection)> = Vec::new();
    let mut devices: Vec<&RawSection> = Vec::new();
    for sec in &doc.sections {
        match sec.kind.as_str() {
            kind @ ("daemon" | "geoip" | "defaults" | "notify") => {
                if let Some(first) = singles.get(kind) {
                    v.err(sec.line, kind, format!("duplicate {kind} section (first on line {})", first.line));
                } else {
                    singles.insert(kind, sec);
                }
            }
            kind @ ("profile" | "list") => {
                let Some(name) = sec.name.as_deref() else {
                    v.err(sec.line, kind, format!("a {kind} section needs a name: config {kind} 'NAME'"));
                    continue;
                };
                let key = format!("{kind}.{name}");
                if !is_name(name) {
                    v.err(sec.line, &key, format!("bad {kind} name {name:?} (use letters, digits, '-' and '_')"));
                    continue;
                }
                let seen = if kind == "profile" { &mut profiles } else { &mut lists };
                if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
                    v.err(sec.line, &key, format!("duplicate {kind} (first on line {})", first.line));
                    continue;
                }
                seen.push((name, sec));
            }
            "device" => devices.push(sec),
            other => v.err(sec.line, other, format!("unknown section (expected one of: {})", KINDS.join(", "))),
        }
    }

    let daemon = v.daemon(singles.get("daemon").copied());
    let geoip = v.geoip(singles.get("geoip").copied());
    let (defaults, default_line) = v.defaults(singles.get("defaults").copied());
    let notify = v.notify(singles.get("notify").copied());

    let lists: BTreeMap<String, ListDef> = lists.iter().map(|(name, sec)| (name.to_string(), v.list_def(name, sec))).collect();
    let profile_secs = profiles;
    let mut profiles: BTreeMap<String, Profile> =
        profile_secs.iter().map(|(name, sec)| (name.to_string(), v.profile(name, sec, &lists))).collect();

    if !profiles.contains_key(&defaults.profile) {
        if defaults.profile == DEFAULT_PROFILE {
            profiles.insert(DEFAULT_PROFILE.to_string(), Profile::implicit(DEFAULT_PROFILE));
        } else {
            v.err(default_line, "defaults.profile", format!("no profile {:?} is configured", defaults.profile));
        }
    }

    if daemon.dns_hold == DnsHold::Off {
        for (name, sec) in &profile_secs {
            if profiles.get(*name).is_some_and(|p| p.dns_filter == DnsFilter::Nxdomain) {
                let line = sec.options.iter().find(|o| o.key == "dns_filter").map_or(sec.line, |o| o.line);
                v.err(line, &format!("profile.{name}.dns_filter"), "\"nxdomain\" needs held answers, and daemon.dns_hold is \"off\"");
            }
        }
    }

    let devices = v.devices(&devices, &profiles);

    if v.errors.is_empty() {
        Ok(Config { source: file.to_path_buf(), daemon, geoip, defaults, profiles, lists, devices, notify })
    } else {
        // Sections come out of the TOML reader in key order; file order
        // reads better.
        v.errors.sort_by_key(|e| e.line);
        Err(ConfigErrors(v.errors))
    }
}

/// Profile and list names: `[A-Za-z0-9_-]+`.
fn is_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// nft identifiers: `[A-Za-z][A-Za-z0-9_]{0,31}`.
fn is_nft_ident(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && b.len() <= 32 && b[0].is_ascii_alphabetic() && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// What Linux accepts as an interface name (`dev_valid_name`).
fn is_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() < 16
        && s != "."
        && s != ".."
        && !s.bytes().any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b.is_ascii_control())
}

struct Validator<'a> {
    file: &'a Path,
    syntax: Syntax,
    errors: Vec<ConfigError>,
}

/// A section's options by key, after unknown and repeated keys were reported.
struct Fields<'s> {
    prefix: String,
    map: BTreeMap<&'s str, &'s RawOption>,
}

impl<'s> Fields<'s> {
    fn get(&self, key: &str) -> Option<(String, &'s RawOption)> {
        self.map.get(key).map(|o| (format!("{}.{key}", self.prefix), *o))
    }
}

impl Validator<'_> {
    fn err(&mut self, line: usize, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError { file: self.file.to_path_buf(), line, key: key.to_string(), message: message.into() });
    }

    fn wrong_type(&mut self, key: &str, opt: &RawOption, want: &str) {
        let found = opt.value.type_name();
        self.err(opt.line, key, format!("expected {want}, found {found}"));
    }

    fn fields<'s>(&mut self, prefix: String, sec: Option<&'s RawSection>, allowed: &[&str]) -> Fields<'s> {
        let mut map: BTreeMap<&'s str, &'s RawOption> = BTreeMap::new();
        for opt in sec.map(|s| s.options.as_slice()).unwrap_or_default() {
            let key = format!("{prefix}.{}", opt.key);
            if !allowed.contains(&opt.key.as_str()) {
                self.err(opt.line, &key, format!("unknown key (expected one of: {})", allowed.join(", ")));
            } else if let Some(first) = map.get(opt.key.as_str()) {
                self.err(opt.line, &key, format!("set more than once (first on line {})", first.line));
            } else {
                map.insert(&opt.key, opt);
            }
        }
        Fields { prefix, map }
    }

    fn string(&mut self, key: &str, opt: &RawOption) -> Option<String> {
        match &opt.value {
            RawValue::Str(s) => Some(s.clone()),
            _ => {
                self.wrong_type(key, opt, "a string");
                None
            }
        }
    }

    /// A list of strings; in UCI a single `option` counts as a one-item list
    /// because UCI users write `option deny 'x'` as often as `list deny 'x'`.
    fn list(&mut self, key: &str, opt: &RawOption) -> Option<Vec<(String, usize)>> {
        match &opt.value {
            RawValue::List(items) => Some(items.clone()),
            RawValue::Str(s) if self.syntax == Syntax::Uci => Some(vec![(s.clone(), opt.line)]),
            _ => {
                self.wrong_type(key, opt, "a list of strings");
                None
            }
        }
    }

    fn bool(&mut self, key: &str, opt: &RawOption) -> Option<bool> {
        match &opt.value {
            RawValue::Bool(b) => Some(*b),
            RawValue::Str(s) if self.syntax == Syntax::Uci => match s.as_str() {
                "1" | "true" | "yes" | "on" => Some(true),
                "0" | "false" | "no" | "off" => Some(false),
                _ => {
                    self.err(opt.line, key, format!("expected a boolean (1/0, true/false, yes/no, on/off), found {s:?}"));
                    None
                }
            },
            _ => {
                self.wrong_type(key, opt, "a boolean");
                None
            }
        }
    }

    fn int(&mut self, key: &str, opt: &RawOption) -> Option<i64> {
        match &opt.value {
            RawValue::Int(n) => Some(*n),
            RawValue::Str(s) if self.syntax == Syntax::Uci => match s.trim().parse() {
                Ok(n) => Some(n),
                Err(_) => {
                    self.err(opt.line, key, format!("expected an integer, found {s:?}"));
                    None
                }
            },
            _ => {
                self.wrong_type(key, opt, "an integer");
                None
            }
        }
    }

    fn duration(&mut self, key: &str, opt: &RawOption) -> Option<Duration> {
        match &opt.value {
            RawValue::Str(s) => match parse_duration(s) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.err(opt.line, key, e.to_string());
                    None
                }
            },
            RawValue::Int(n) => match u64::try_from(*n).ok().and_then(duration_secs) {
                Some(d) => Some(d),
                None => {
                    self.err(opt.line, key, format!("must be 0..={MAX_DURATION_SECS} seconds, found {n}"));
                    None
                }
            },
            _ => {
                self.wrong_type(key, opt, "a duration (e.g. \"30s\", \"1h30m\")");
                None
            }
        }
    }

    fn size(&mut self, key: &str, opt: &RawOption) -> Option<u64> {
        let n = match &opt.value {
            RawValue::Str(s) => match parse_size(s) {
                Ok(n) => n,
                Err(e) => {
                    self.err(opt.line, key, e.to_string());
                    return None;
                }
            },
            RawValue::Int(n) => match u64::try_from(*n) {
                Ok(n) => n,
                Err(_) => {
                    self.err(opt.line, key, format!("a size cannot be negative: {n}"));
                    return None;
                }
            },
            _ => {
                self.wrong_type(key, opt, "a size (e.g. \"50MB\")");
                return None;
            }
        };
        if n == 0 {
            self.err(opt.line, key, "must be more than 0 bytes (leave the key out to turn the alert off)");
            return None;
        }
        Some(n)
    }

    fn path(&mut self, key: &str, opt: &RawOption) -> Option<PathBuf> {
        let s = self.string(key, opt)?;
        if s.is_empty() || s.contains('\0') {
            self.err(opt.line, key, format!("not a usable path: {s:?}"));
            return None;
        }
        Some(PathBuf::from(s))
    }

    fn selectors(&mut self, key: &str, opt: &RawOption) -> Vec<Selector> {
        let mut out = Vec::new();
        for (item, line) in self.list(key, opt).unwrap_or_default() {
            match Selector::from_str(&item) {
                Ok(s) => out.push(s),
                Err(e) => self.err(line, key, e.to_string()),
            }
        }
        out
    }

    fn daemon(&mut self, sec: Option<&RawSection>) -> DaemonConfig {
        let f = self.fields("daemon".into(), sec, DAEMON_KEYS);
        let mut d = DaemonConfig {
            mode: Mode::Enforce,
            lan: vec!["br-lan".to_string()],
            alert_interval: Duration::from_secs(3600),
            dns_nflog_group: 5335,
            keep_on_exit: false,
            leases: PathBuf::from("/tmp/dhcp.leases"),
            state_dir: PathBuf::from("/etc/leash/state"),
            socket: PathBuf::from("/var/run/leash.sock"),
            nft_table: "leash".to_string(),
            syslog: PathBuf::from("/dev/log"),
            conntrack_buffer: ConntrackBuffer::Auto,
            dns_hold: DnsHold::Auto,
            dns_queue: DEFAULT_DNS_QUEUE,
        };
        if let Some((key, opt)) = f.get("dns_hold") {
            match self.string(&key, opt).as_deref() {
                Some("auto") => d.dns_hold = DnsHold::Auto,
                Some("on") => d.dns_hold = DnsHold::On,
                Some("off") => d.dns_hold = DnsHold::Off,
                Some("external") => d.dns_hold = DnsHold::External,
                Some(other) => self.err(opt.line, &key, format!("expected \"auto\", \"on\", \"off\" or \"external\", found {other:?}")),
                None => {}
            }
        }
        if let Some((key, opt)) = f.get("dns_queue") {
            if let Some(n) = self.int(&key, opt) {
                match u16::try_from(n) {
                    Ok(q) => d.dns_queue = q,
                    _ => self.err(opt.line, &key, format!("must be 0..=65535, found {n}")),
                }
            }
        }
        if let Some((key, opt)) = f.get("conntrack_buffer") {
            if matches!(&opt.value, RawValue::Str(s) if s == "auto") {
                d.conntrack_buffer = ConntrackBuffer::Auto;
            } else if let Some(n) = self.size(&key, opt) {
                if (MIN_CONNTRACK_BUFFER..=MAX_CONNTRACK_BUFFER).contains(&n) {
                    d.conntrack_buffer = ConntrackBuffer::Bytes(n as usize);
                } else {
                    self.err(opt.line, &key, format!("must be \"auto\" or between 64KiB and 1GiB, found {n} bytes"));
                }
            }
        }
        if let Some((key, opt)) = f.get("mode") {
            match self.string(&key, opt).as_deref() {
                Some("enforce") => d.mode = Mode::Enforce,
                Some("monitor") => d.mode = Mode::Monitor,
                Some(other) => self.err(opt.line, &key, format!("expected \"enforce\" or \"monitor\", found {other:?}")),
                None => {}
            }
        }
        if let Some((key, opt)) = f.get("lan") {
            if let Some(items) = self.list(&key, opt) {
                if items.is_empty() {
                    self.err(opt.line, &key, "needs at least one interface");
                }
                let mut lan = Vec::new();
                for (name, line) in items {
                    if is_ifname(&name) {
                        lan.push(name);
                    } else {
                        self.err(line, &key, format!("not an interface name: {name:?}"));
                    }
                }
                d.lan = lan;
            }
        }
        if let Some((key, opt)) = f.get("alert_interval") {
            if let Some(x) = self.duration(&key, opt) {
                d.alert_interval = x;
            }
        }
        if let Some((key, opt)) = f.get("dns_nflog_group") {
            if let Some(n) = self.int(&key, opt) {
                match u16::try_from(n) {
                    Ok(g) if g >= 1 => d.dns_nflog_group = g,
                    _ => self.err(opt.line, &key, format!("must be 1..=65535, found {n}")),
                }
            }
        }
        if let Some((key, opt)) = f.get("keep_on_exit") {
            if let Some(b) = self.bool(&key, opt) {
                d.keep_on_exit = b;
            }
        }
        for (name, slot) in
            [("leases", &mut d.leases), ("state_dir", &mut d.state_dir), ("socket", &mut d.socket), ("syslog", &mut d.syslog)]
        {
            if let Some((key, opt)) = f.get(name) {
                if let Some(p) = self.path(&key, opt) {
                    *slot = p;
                }
            }
        }
        if let Some((key, opt)) = f.get("nft_table") {
            if let Some(t) = self.string(&key, opt) {
                if is_nft_ident(&t) {
                    d.nft_table = t;
                } else {
                    self.err(opt.line, &key, format!("not an nft table name ([A-Za-z][A-Za-z0-9_]{{0,31}}): {t:?}"));
                }
            }
        }
        d
    }

    fn geoip(&mut self, sec: Option<&RawSection>) -> GeoipConfig {
        let f = self.fields("geoip".into(), sec, GEOIP_KEYS);
        let mut g = GeoipConfig::default();
        if let Some((key, opt)) = f.get("country_db") {
            g.country_db = self.path(&key, opt);
        }
        if let Some((key, opt)) = f.get("asn_db") {
            g.asn_db = self.path(&key, opt);
        }
        g
    }

    /// Also returns the line of `defaults.profile` (0 when not set) for the
    /// "no such profile" error.
    fn defaults(&mut self, sec: Option<&RawSection>) -> (Defaults, usize) {
        let f = self.fields("defaults".into(), sec, DEFAULTS_KEYS);
        let mut d = Defaults { profile: DEFAULT_PROFILE.to_string(), learn: Duration::ZERO };
        let mut line = 0;
        if let Some((key, opt)) = f.get("profile") {
            line = opt.line;
            if let Some(p) = self.string(&key, opt) {
                if is_name(&p) {
                    d.profile = p;
                } else {
                    self.err(opt.line, &key, format!("bad profile name {p:?}"));
                }
            }
        }
        if let Some((key, opt)) = f.get("learn") {
            if let Some(x) = self.duration(&key, opt) {
                d.learn = x;
            }
        }
        (d, line)
    }

    fn list_def(&mut self, name: &str, sec: &RawSection) -> ListDef {
        let f = self.fields(format!("list.{name}"), Some(sec), LIST_KEYS);
        let mut l =
            ListDef { name: name.to_string(), files: Vec::new(), selectors: Vec::new(), urls: Vec::new(), refresh: DEFAULT_LIST_REFRESH };
        if let Some((key, opt)) = f.get("files") {
            for (p, line) in self.list(&key, opt).unwrap_or_default() {
                if p.is_empty() || p.contains('\0') {
                    self.err(line, &key, format!("not a usable path: {p:?}"));
                } else {
                    l.files.push(PathBuf::from(p));
                }
            }
        }
        if let Some((key, opt)) = f.get("selectors") {
            l.selectors = self.selectors(&key, opt);
        }
        if let Some((key, opt)) = f.get("urls") {
            let items = self.list(&key, opt).unwrap_or_default();
            if items.len() > MAX_LIST_URLS {
                self.err(opt.line, &key, format!("at most {MAX_LIST_URLS} URLs per list, found {}", items.len()));
            }
            for (u, line) in items.into_iter().take(MAX_LIST_URLS) {
                match check_url(&u) {
                    Ok(()) if l.urls.contains(&u) => self.err(line, &key, format!("URL listed twice: {u}")),
                    Ok(()) => l.urls.push(u),
                    Err(why) => self.err(line, &key, format!("{why}: {u:?}")),
                }
            }
        }
        if let Some((key, opt)) = f.get("refresh") {
            if let Some(d) = self.duration(&key, opt) {
                if d < MIN_LIST_REFRESH {
                    self.err(opt.line, &key, format!("must be at least {}s", MIN_LIST_REFRESH.as_secs()));
                } else {
                    l.refresh = d;
                }
            }
            if f.get("urls").is_none() {
                self.err(opt.line, &key, "refresh needs urls (files are re-read on reload)");
            }
        }
        l
    }

    fn profile(&mut self, name: &str, sec: &RawSection, lists: &BTreeMap<String, ListDef>) -> Profile {
        let f = self.fields(format!("profile.{name}"), Some(sec), PROFILE_KEYS);
        let mut p = Profile::implicit(name);
        for (k, slot) in [("unlisted", &mut p.unlisted), ("denied", &mut p.denied)] {
            if let Some((key, opt)) = f.get(k) {
                if let Some(s) = self.string(&key, opt) {
                    match Verdict::from_str(&s) {
                        Ok(v) => *slot = v,
                        Err(e) => self.err(opt.line, &key, e.to_string()),
                    }
                }
            }
        }
        if let Some((key, opt)) = f.get("deny") {
            for (list, line) in self.list(&key, opt).unwrap_or_default() {
                if !lists.contains_key(&list) {
                    self.err(line, &key, format!("no list {list:?} is configured"));
                } else if !p.deny.contains(&list) {
                    p.deny.push(list);
                }
            }
        }
        if let Some((key, opt)) = f.get("upload_alert") {
            p.upload_alert = self.size(&key, opt);
        }
        if let Some((key, opt)) = f.get("dns_filter") {
            match self.string(&key, opt).as_deref() {
                Some("off") => p.dns_filter = DnsFilter::Off,
                Some("nxdomain") => p.dns_filter = DnsFilter::Nxdomain,
                Some(other) => self.err(opt.line, &key, format!("expected \"off\" or \"nxdomain\", found {other:?}")),
                None => {}
            }
        }
        if let Some((key, opt)) = f.get("dns_bypass") {
            match self.string(&key, opt).as_deref() {
                Some("allow") => p.dns_bypass = DnsBypass::Allow,
                Some("alert") => p.dns_bypass = DnsBypass::Alert,
                Some("block") => p.dns_bypass = DnsBypass::Block,
                Some(other) => self.err(opt.line, &key, format!("expected \"allow\", \"alert\" or \"block\", found {other:?}")),
                None => {}
            }
        }
        if let Some((key, opt)) = f.get("dns_bypass_lists") {
            for (list, line) in self.list(&key, opt).unwrap_or_default() {
                if !lists.contains_key(&list) {
                    self.err(line, &key, format!("no list {list:?} is configured"));
                } else if !p.dns_bypass_lists.contains(&list) {
                    p.dns_bypass_lists.push(list);
                }
            }
        }
        p
    }

    fn devices(&mut self, secs: &[&RawSection], profiles: &BTreeMap<String, Profile>) -> Vec<DeviceConfig> {
        let mut out = Vec::new();
        // (value, prefix, line) of earlier devices, for duplicate reports.
        let mut macs: Vec<(Mac, String, usize)> = Vec::new();
        let mut names: Vec<(String, String, usize)> = Vec::new();
        for (i, sec) in secs.iter().enumerate() {
            let prefix = format!("device[{}]", i + 1);
            let f = self.fields(prefix.clone(), Some(sec), DEVICE_KEYS);
            let mac = match f.get("mac") {
                None => {
                    self.err(sec.line, &format!("{prefix}.mac"), "missing (every device needs its MAC address)");
                    None
                }
                Some((key, opt)) => self.string(&key, opt).and_then(|s| match Mac::from_str(s.trim()) {
                    Ok(m) if m.is_multicast() || m.is_zero() => {
                        self.err(opt.line, &key, format!("not a device's unicast MAC address: {m}"));
                        None
                    }
                    Ok(m) => match macs.iter().find(|(x, _, _)| *x == m) {
                        Some((_, other, line)) => {
                            let msg = format!("duplicate MAC {m} (also {other} on line {line})");
                            self.err(opt.line, &key, msg);
                            None
                        }
                        None => {
                            macs.push((m, prefix.clone(), opt.line));
                            Some(m)
                        }
                    },
                    Err(e) => {
                        self.err(opt.line, &key, e.to_string());
                        None
                    }
                }),
            };
            // UCI users may name the section instead: `config device 'cam'`.
            let name = match f.get("name") {
                Some((key, opt)) => self.string(&key, opt).map(|n| (n, key, opt.line)),
                None => sec.name.clone().map(|n| (n, format!("{prefix}.name"), sec.line)),
            };
            let name = name.and_then(|(n, key, line)| {
                if let Some(why) = bad_device_name(&n) {
                    self.err(line, &key, format!("{why}: {n:?}"));
                    None
                } else if let Some((_, other, l)) = names.iter().find(|(x, _, _)| *x == n) {
                    let msg = format!("duplicate device name {n:?} (also {other} on line {l})");
                    self.err(line, &key, msg);
                    None
                } else {
                    names.push((n.clone(), prefix.clone(), line));
                    Some(n)
                }
            });
            let profile = f.get("profile").and_then(|(key, opt)| {
                let p = self.string(&key, opt)?;
                if profiles.contains_key(&p) {
                    Some(p)
                } else {
                    self.err(opt.line, &key, format!("no profile {p:?} is configured"));
                    None
                }
            });
            let consent = match f.get("consent") {
                Some((key, opt)) => self.selectors(&key, opt),
                None => Vec::new(),
            };
            if let Some(mac) = mac {
                out.push(DeviceConfig { mac, name, profile, consent });
            }
        }
        out
    }
}

/// A URL the router's fetch client is handed as one argument: http(s)
/// only, a host, no whitespace or control characters (nothing a client
/// could read as an option or a second argument).
fn check_url(u: &str) -> Result<(), &'static str> {
    let rest = u.strip_prefix("https://").or_else(|| u.strip_prefix("http://")).ok_or("not an http:// or https:// URL")?;
    if u.len() > MAX_URL_LEN {
        return Err("URL too long");
    }
    if u.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) || u.chars().any(char::is_control) {
        return Err("whitespace or control characters in URL");
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    if host.is_empty() || host.starts_with(':') {
        return Err("URL without a host");
    }
    Ok(())
}

/// Device names are how the CLI finds a device, so one that reads as a MAC
/// or an IP address would be ambiguous.
fn bad_device_name(n: &str) -> Option<&'static str> {
    if n.trim().is_empty() {
        Some("empty device name")
    } else if n.chars().any(char::is_control) {
        Some("control characters in device name")
    } else if n.len() > 64 {
        Some("device name longer than 64 bytes")
    } else if Mac::from_str(n).is_ok() || IpAddr::from_str(n).is_ok() {
        Some("a device name must not look like an address")
    } else {
        None
    }
}
