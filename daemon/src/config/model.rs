//! The validated configuration: what the rest of leash reads. Built only by
//! `config::load`/`config::parse`, so every value here has passed validation.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::mac::Mac;
use crate::policy::selector::Selector;
use crate::policy::verdict::Verdict;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Enforce,
    Monitor,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// The file this was read from (for messages).
    pub source: PathBuf,
    pub daemon: DaemonConfig,
    pub geoip: GeoipConfig,
    pub defaults: Defaults,
    /// Always holds `defaults.profile`.
    pub profiles: BTreeMap<String, Profile>,
    pub lists: BTreeMap<String, ListDef>,
    pub devices: Vec<DeviceConfig>,
    pub notify: NotifyConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DaemonConfig {
    pub mode: Mode,
    /// Interfaces whose devices are watched (default `["br-lan"]`).
    pub lan: Vec<String>,
    /// Repeat suppression per device+destination+verdict (default 1h).
    #[serde(with = "secs")]
    pub alert_interval: Duration,
    /// NFLOG group for snooped DNS answers (default 5335).
    pub dns_nflog_group: u16,
    pub keep_on_exit: bool,
    /// dnsmasq lease file (default `/tmp/dhcp.leases`).
    pub leases: PathBuf,
    /// Default `/etc/leash/state`.
    pub state_dir: PathBuf,
    /// Default `/var/run/leash.sock`.
    pub socket: PathBuf,
    /// Name of the `inet` table leash owns (default `leash`).
    pub nft_table: String,
    /// Syslog datagram socket (default `/dev/log`).
    pub syslog: PathBuf,
    /// Receive buffer for conntrack events (default `auto`: scaled with
    /// the RAM, see `ConntrackBuffer::bytes`). Kernel memory, taken only
    /// while a burst is queued; events past it are lost and a resync
    /// catches up.
    pub conntrack_buffer: ConntrackBuffer,
    /// Hold DNS answers to LAN devices until judged (SPEC §2).
    pub dns_hold: DnsHold,
    /// NFQUEUE number the held answers go to (default 5336).
    pub dns_queue: u16,
}

/// `daemon.dns_hold`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsHold {
    /// Hold where the kernel has nft `queue`, else snoop a copy (NFLOG).
    Auto,
    /// Hold, or refuse to start.
    On,
    /// Snoop a copy only.
    Off,
    /// Another firewall queues the answers to `dns_queue`: read that queue,
    /// install no queue rule.
    External,
}

/// `profile.dns_filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsFilter {
    Off,
    /// A held answer whose name this device's profile denies becomes NXDOMAIN.
    Nxdomain,
}

/// `profile.dns_bypass`: DNS that goes around the router's resolver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsBypass {
    Allow,
    /// One alert per attempt (suppressed like any alert).
    Alert,
    /// Plain DNS redirected to the router, DoT/DoQ and DoH endpoints cut, alerted.
    Block,
}

pub const DEFAULT_DNS_QUEUE: u16 = 5336;

/// `daemon.conntrack_buffer`: the size given to `SO_RCVBUF(FORCE)` on the
/// conntrack event socket. The kernel doubles that figure for its own
/// accounting (it counts each queued event's whole skb, ≈1.3 kB for a
/// ≈230-byte message, against twice the value), so the kernel memory a
/// full buffer can pin is twice the size named here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConntrackBuffer {
    /// Scaled with the router's RAM (`auto_conntrack_buffer`).
    Auto,
    Bytes(usize),
}

impl ConntrackBuffer {
    /// The size to ask for, given the RAM in bytes (`None`: unknown).
    pub fn bytes(self, mem_total: Option<u64>) -> usize {
        match self {
            ConntrackBuffer::Auto => auto_conntrack_buffer(mem_total),
            ConntrackBuffer::Bytes(n) => n,
        }
    }
}

impl Serialize for ConntrackBuffer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ConntrackBuffer::Auto => s.serialize_str("auto"),
            ConntrackBuffer::Bytes(n) => s.serialize_u64(*n as u64),
        }
    }
}

/// `conntrack_buffer = "auto"`: RAM/64, between 1 MiB and 64 MiB. The
/// kernel's own limit is twice that, and a queued event costs ≈1.3 kB of
/// it, so 128 MB of RAM (≈122 MB MemTotal) gets 1.9 MiB: ≈3 000 events of
/// backlog, at most 3.8 MiB (3 % of the RAM) pinned while a burst waits;
/// 512 MB gets 8 MiB, and 4 GiB or more the old fixed 64 MiB. A burst past
/// it loses events, and the resync that follows (a conntrack dump) judges
/// the flows they carried; a bigger buffer only makes resyncs rarer.
/// Unknown RAM counts as 128 MiB: the safe guess for a router.
pub fn auto_conntrack_buffer(mem_total: Option<u64>) -> usize {
    let ram = mem_total.unwrap_or(128 << 20);
    (ram / 64).clamp(AUTO_MIN_CONNTRACK_BUFFER as u64, MAX_AUTO_CONNTRACK_BUFFER as u64) as usize
}

/// `MemTotal` of /proc/meminfo's text, in bytes.
pub fn meminfo_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
    let mut words = line.split_whitespace();
    let n: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => n.checked_mul(1024),
        None => Some(n),
        Some(_) => None,
    }
}

/// The least and most `auto` picks.
pub const AUTO_MIN_CONNTRACK_BUFFER: usize = 1 << 20;
pub const MAX_AUTO_CONNTRACK_BUFFER: usize = 64 << 20;
/// Bounds of an explicit size.
pub const MIN_CONNTRACK_BUFFER: u64 = 64 << 10;
pub const MAX_CONNTRACK_BUFFER: u64 = 1 << 30;

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct GeoipConfig {
    pub country_db: Option<PathBuf>,
    pub asn_db: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Defaults {
    /// Profile of devices not listed (default `default`, an implicit
    /// allow-everything profile when no profile of that name is configured).
    pub profile: String,
    /// Trust-on-first-use period for new devices; zero = off.
    #[serde(with = "secs")]
    pub learn: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Profile {
    pub name: String,
    /// Verdict for destinations neither consented nor denied (default allow).
    pub unlisted: Verdict,
    /// Verdict for destinations matched by a deny list (default block).
    pub denied: Verdict,
    /// Names of `[list.*]` entries; each exists in `Config::lists`.
    pub deny: Vec<String>,
    /// Bytes sent to one unconsented destination within alert_interval
    /// that trigger an ALERT.
    pub upload_alert: Option<u64>,
    pub dns_filter: DnsFilter,
    pub dns_bypass: DnsBypass,
    /// Lists (names of `[list.*]`) of DNS-over-HTTPS endpoints cut on 443
    /// when `dns_bypass = "block"`, alerted when `"alert"`.
    pub dns_bypass_lists: Vec<String>,
}

impl Profile {
    /// Every key at its default, with no name.
    pub const DEFAULTS: Profile = Profile {
        name: String::new(),
        unlisted: crate::policy::verdict::Verdict::Allow,
        denied: crate::policy::verdict::Verdict::Block,
        deny: Vec::new(),
        upload_alert: None,
        dns_filter: DnsFilter::Off,
        dns_bypass: DnsBypass::Alert,
        dns_bypass_lists: Vec::new(),
    };

    /// A profile with every key at its default.
    pub fn implicit(name: &str) -> Self {
        Profile { name: name.to_string(), ..Self::DEFAULTS }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListDef {
    pub name: String,
    /// List files, read by `lists::load_file` (their contents are not part of
    /// the config; a missing file is a config error).
    pub files: Vec<PathBuf>,
    pub selectors: Vec<Selector>,
    /// Subscribed sources (http or https), fetched by the router's own
    /// client; their last good download is cached under `state_dir/lists`.
    pub urls: Vec<String>,
    /// How often `urls` are fetched again (default 24h).
    #[serde(with = "secs")]
    pub refresh: Duration,
}

pub const DEFAULT_LIST_REFRESH: Duration = Duration::from_secs(24 * 3600);
/// Shorter intervals only load the list's server (tests use seconds).
pub const MIN_LIST_REFRESH: Duration = Duration::from_secs(1);
pub const MAX_LIST_URLS: usize = 16;
pub const MAX_URL_LEN: usize = 2048;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceConfig {
    pub mac: Mac,
    pub name: Option<String>,
    /// Names an existing profile when set.
    pub profile: Option<String>,
    pub consent: Vec<Selector>,
}

/// `[notify]`: alerts beyond syslog (SPEC §3, §7).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotifyConfig {
    /// Run once per alert, the alert as one JSON object on stdin.
    pub exec: Option<PathBuf>,
    /// Verbs sent to `exec` and to MQTT's alert topic (upper case, as logged).
    pub on: Vec<String>,
    /// A program still running after this long is killed (default 10s).
    #[serde(with = "secs")]
    pub exec_timeout: Duration,
    pub mqtt: Option<MqttConfig>,
}

/// The verbs notified by default: SPEC §3's list, and DEVICE: a new device is announced on every channel
/// (issue 10), so that its owner can give it a profile while it learns.
pub const DEFAULT_NOTIFY_ON: &[&str] = &["QUARANTINE", "BLOCK", "WOULD-QUARANTINE", "WOULD-BLOCK", "ALERT", "DEVICE"];
/// Every verb `on` may name (SPEC §5).
pub const NOTIFY_VERBS: &[&str] =
    &["ALERT", "BLOCK", "QUARANTINE", "RELEASE", "CONSENT", "LEARNED", "DEVICE", "WOULD-BLOCK", "WOULD-QUARANTINE"];

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            exec: None,
            on: DEFAULT_NOTIFY_ON.iter().map(|s| s.to_string()).collect(),
            exec_timeout: Duration::from_secs(10),
            mqtt: None,
        }
    }
}

impl NotifyConfig {
    pub fn wants(&self, verb: &str) -> bool {
        self.on.iter().any(|v| v == verb)
    }
}

/// `mqtt = "mqtt://host:port"` and its companions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MqttConfig {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    /// Never shown by `leash check` or `status`.
    #[serde(skip)]
    pub password: Option<String>,
    /// Root of leash's topics (default `leash`).
    pub topic: String,
    /// Whether Home Assistant may quarantine and release devices.
    pub commands: bool,
}

mod secs {
    use std::time::Duration;
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}
