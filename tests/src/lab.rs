//! One lab: a router namespace running the real `leash` binary, a WAN
//! namespace holding the "cloud" hosts, and device namespaces on the
//! router's `br-lan`. Every lab has its own names and paths, so tests run in
//! parallel; everything it made is removed on drop, also when a test panics.
//!
//! ```text
//!  device n (lx<id>-dn)          router R (lx<id>-r)                 WAN W (lx<id>-w)
//!  eth0 02:00:00:00:07:0n  ──  lan<n> ─ br-lan 192.168.7.1/24     eth0 192.0.2.2
//!  192.168.7.1n, fd00:7::1n            fd00:7::1/64              lo: 203.0.113.7 .8,
//!                                wan 192.0.2.1 ──────────────────    198.51.100.20,
//!                                    2001:db8:ffff::1                2001:db8:bad::7 ::8
//! ```

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::net::{IpAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::dns::{self, QType, Reply, Resolver, Zone};
use crate::netns::{self, Netns, TcpServer};
use crate::syslog::{self, LogLine, SyslogSink};
use crate::wait;

pub const ROUTER_V4: &str = "192.168.7.1";
pub const ROUTER_V6: &str = "fd00:7::1";
/// The cloud hosts on W: two "bad" ones and harmless neighbours.
pub const CLOUD_V4: [&str; 3] = ["203.0.113.7", "203.0.113.8", "198.51.100.20"];
pub const CLOUD_V6: [&str; 2] = ["2001:db8:bad::7", "2001:db8:bad::8"];

/// How long the daemon may take to answer `status` after being started.
pub const START_DEADLINE: Duration = Duration::from_secs(10);
/// Default deadline for the kernel or the daemon to react to something.
pub const REACT_DEADLINE: Duration = Duration::from_secs(5);

/// MAC of device n: `02:00:00:00:07:0n` (locally administered).
pub fn mac(n: u8) -> String {
    format!("02:00:00:00:07:{n:02x}")
}

/// IPv4 address of device n: `192.168.7.1n`.
pub fn ip4(n: u8) -> IpAddr {
    format!("192.168.7.{}", 10 + n as u32).parse().unwrap()
}

/// IPv6 address of device n: `fd00:7::1n`.
pub fn ip6(n: u8) -> IpAddr {
    format!("fd00:7::1{n}").parse().unwrap()
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|_| panic!("not an address: {s}"))
}

pub struct Lab {
    pub id: String,
    /// `/tmp/leash-lab-<id>`: config, state, socket, syslog socket, daemon log.
    pub dir: PathBuf,
    // Namespaces last: they are deleted after the daemon is gone.
    daemon: Option<Child>,
    config: Option<PathBuf>,
    syslog: Option<SyslogSink>,
    bin: PathBuf,
    /// A command the daemon runs under (`setpriv ... --`), empty for none.
    wrap: Vec<String>,
    /// dnsmasq resolvers and helper processes (the WAN delayer): killed on drop.
    resolvers: Vec<Resolver>,
    helpers: Vec<Child>,
    devices: BTreeMap<u8, Netns>,
    wan: Netns,
    router: Netns,
}

impl Lab {
    /// Builds router, WAN and the cloud hosts. `name` is the test's name:
    /// with the pid and a counter it makes the lab's unique id.
    pub fn new(name: &str) -> Lab {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (name, std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)).hash(&mut h);
        let id = format!("{:06x}", h.finish() & 0xff_ffff);
        let dir = PathBuf::from(format!("/tmp/leash-lab-{id}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create lab dir");

        let router = Netns::create(&format!("lx{id}-r"));
        let wan = Netns::create(&format!("lx{id}-w"));

        // Router: LAN bridge, WAN uplink, forwarding on.
        router.ip(&["link", "add", "br-lan", "type", "bridge"]);
        router.ip(&["addr", "add", "192.168.7.1/24", "dev", "br-lan"]);
        router.ip(&["addr", "add", "fd00:7::1/64", "dev", "br-lan", "nodad"]);
        router.ip(&["link", "set", "br-lan", "up"]);
        // The veth is made inside R with its peer created directly in W: no
        // interface ever appears in the host namespace, so names never clash
        // between parallel labs.
        router.ip(&["link", "add", "wan", "type", "veth", "peer", "name", "eth0", "netns", &wan.name]);
        router.ip(&["addr", "add", "192.0.2.1/24", "dev", "wan"]);
        router.ip(&["addr", "add", "2001:db8:ffff::1/64", "dev", "wan", "nodad"]);
        router.ip(&["link", "set", "wan", "up"]);
        router.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]);
        router.ip(&["route", "add", "default", "via", "192.0.2.2"]);
        router.ip(&["-6", "route", "add", "default", "via", "2001:db8:ffff::2"]);

        // WAN: the cloud hosts are addresses on its loopback.
        wan.ip(&["addr", "add", "192.0.2.2/24", "dev", "eth0"]);
        wan.ip(&["addr", "add", "2001:db8:ffff::2/64", "dev", "eth0", "nodad"]);
        wan.ip(&["link", "set", "eth0", "up"]);
        for a in CLOUD_V4 {
            wan.ip(&["addr", "add", &format!("{a}/32"), "dev", "lo"]);
        }
        for a in CLOUD_V6 {
            wan.ip(&["addr", "add", &format!("{a}/128"), "dev", "lo"]);
        }
        wan.ip(&["route", "add", "192.168.7.0/24", "via", "192.0.2.1"]);
        wan.ip(&["-6", "route", "add", "fd00:7::/64", "via", "2001:db8:ffff::1"]);

        Lab { id, dir, daemon: None, config: None, syslog: None, bin: leash_bin(), wrap: Vec::new(), resolvers: Vec::new(), helpers: Vec::new(), devices: BTreeMap::new(), wan, router }
    }

    /// Adds device n (1..=9) on the router's `br-lan` and returns its namespace name.
    pub fn device(&mut self, n: u8) -> String {
        assert!((1..=9).contains(&n), "devices are numbered 1..=9");
        assert!(!self.devices.contains_key(&n), "device {n} exists");
        let d = Netns::create(&format!("lx{}-d{n}", self.id));
        let port = format!("lan{n}");
        self.router.ip(&["link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &d.name]);
        self.router.ip(&["link", "set", &port, "master", "br-lan"]);
        self.router.ip(&["link", "set", &port, "up"]);
        d.ip(&["link", "set", "eth0", "address", &mac(n)]);
        d.ip(&["addr", "add", &format!("{}/24", ip4(n)), "dev", "eth0"]);
        d.ip(&["addr", "add", &format!("{}/64", ip6(n)), "dev", "eth0", "nodad"]);
        d.ip(&["link", "set", "eth0", "up"]);
        d.ip(&["route", "add", "default", "via", ROUTER_V4]);
        d.ip(&["-6", "route", "add", "default", "via", ROUTER_V6]);
        let name = d.name.clone();
        self.devices.insert(n, d);
        name
    }

    pub fn router(&self) -> &Netns {
        &self.router
    }

    pub fn wan(&self) -> &Netns {
        &self.wan
    }

    pub fn dev(&self, n: u8) -> &Netns {
        self.devices.get(&n).unwrap_or_else(|| panic!("no device {n}: call lab.device({n}) first"))
    }

    // ---- the daemon ----

    pub fn socket(&self) -> PathBuf {
        self.dir.join("leash.sock")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("leash.toml")
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// The test's config with the lab's paths inserted right after its
    /// `[daemon]` header (which the test must write): socket, state_dir,
    /// leases and syslog all point into the lab's directory.
    pub fn render_config(&self, config_toml: &str) -> String {
        self.with_lab_paths(config_toml, "[daemon]", |k, v| format!("{k} = \"{v}\"\n"))
    }

    /// Copies `config` and, after its first line equal to `section`, adds
    /// one line per lab path (socket, state_dir, leases, syslog), written
    /// by `option` in the config's syntax.
    fn with_lab_paths(&self, config: &str, section: &str, option: impl Fn(&str, &str) -> String) -> String {
        let mut out = String::new();
        let mut found = false;
        for line in config.lines() {
            out.push_str(line);
            out.push('\n');
            if !found && line.trim() == section {
                found = true;
                for (k, v) in [
                    ("socket", self.socket()),
                    ("state_dir", self.state_dir()),
                    ("leases", self.dir.join("dhcp.leases")),
                    ("syslog", self.dir.join("log")),
                ] {
                    out.push_str(&option(k, &v.display().to_string()));
                }
            }
        }
        assert!(found, "the test's config must contain a `{section}` line");
        out
    }

    /// Writes the config file (with the lab's paths) and returns its path;
    /// a running daemon sees it on `leash reload`.
    pub fn write_config(&mut self, config_toml: &str) -> PathBuf {
        let path = self.config_path();
        std::fs::write(&path, self.render_config(config_toml)).expect("write config");
        self.config = Some(path.clone());
        path
    }

    /// Writes a UCI config (`/etc/config/leash` form) with the lab's paths
    /// as options right after its `config daemon` line, and returns its path.
    pub fn write_uci_config(&mut self, uci: &str) -> PathBuf {
        let out = self.with_lab_paths(uci, "config daemon", |k, v| format!("\toption {k} '{v}'\n"));
        let path = self.dir.join("leash");
        std::fs::write(&path, out).expect("write UCI config");
        self.config = Some(path.clone());
        path
    }

    /// Starts `leash daemon` with a UCI config, as on OpenWrt.
    pub fn start_leash_uci(&mut self, uci: &str) {
        self.write_uci_config(uci);
        self.spawn_daemon();
    }

    /// Starts `leash daemon` in the router with this config and waits until
    /// it answers `status`.
    pub fn start_leash(&mut self, config_toml: &str) {
        self.write_config(config_toml);
        // An empty lease file, as dnsmasq leaves on a router with no leases yet.
        let leases = self.dir.join("dhcp.leases");
        if !leases.exists() {
            std::fs::write(&leases, "").expect("write leases");
        }
        self.spawn_daemon();
    }

    /// Runs the daemon under `argv` from its next start on (e.g. `setpriv
    /// --bounding-set=... --`): the wrapper must exec the daemon, so that
    /// `daemon_pid` stays its pid.
    pub fn wrap_daemon(&mut self, argv: &[&str]) {
        self.wrap = argv.iter().map(|a| a.to_string()).collect();
    }

    /// As `start_leash`, but a daemon that exits during start-up is an
    /// `Err` with its exit status and log, not a panic.
    pub fn try_start_leash(&mut self, config_toml: &str) -> Result<(), String> {
        self.write_config(config_toml);
        let leases = self.dir.join("dhcp.leases");
        if !leases.exists() {
            std::fs::write(&leases, "").expect("write leases");
        }
        self.try_spawn_daemon()
    }

    fn spawn_daemon(&mut self) {
        if let Err(e) = self.try_spawn_daemon() {
            panic!("{e}");
        }
    }

    fn try_spawn_daemon(&mut self) -> Result<(), String> {
        assert!(self.daemon.is_none(), "leash is running already");
        let config = self.config.clone().expect("start_leash first");
        if self.syslog.is_none() {
            // Bound before the daemon starts: its first lines are not lost.
            self.syslog = Some(SyslogSink::bind(&self.dir.join("log")).expect("bind syslog socket"));
        }
        assert!(
            self.bin.exists(),
            "leash binary {} not found: build it first (cargo build -p leash) or set LEASH_BIN",
            self.bin.display()
        );
        let log = OpenOptions::new().create(true).append(true).open(self.dir.join("daemon.log")).expect("daemon.log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.router.name])
            .args(&self.wrap)
            .arg(&self.bin)
            .arg("daemon")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn leash daemon");
        self.daemon = Some(child);
        let mut exited = None;
        let ready = wait::poll_until(START_DEADLINE, || {
            if let Some(st) = self.daemon.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                exited = Some(st);
                return true;
            }
            self.leash(&["status", "--json"]).status.success()
        });
        if let Some(st) = exited {
            self.daemon = None;
            return Err(format!("leash daemon exited during start-up ({st})\n{}", self.diagnostics()));
        }
        if !ready {
            panic!("leash daemon did not answer `status` within {START_DEADLINE:?}\n{}", self.diagnostics());
        }
        Ok(())
    }

    /// The daemon's pid (`ip netns exec` execs it, so it is the child's pid).
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Child::id)
    }

    /// SIGKILL: the daemon gets no chance to clean up (the kernel keeps its table).
    pub fn kill9(&mut self) {
        let mut c = self.daemon.take().expect("leash is not running");
        let _ = c.kill();
        let _ = c.wait();
    }

    /// SIGTERM, then waits for the exit (a clean stop) and returns the status.
    pub fn stop_leash(&mut self) -> ExitStatus {
        let mut c = self.daemon.take().expect("leash is not running");
        let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
        let mut status = None;
        let stopped = wait::poll_until(Duration::from_secs(10), || {
            status = c.try_wait().ok().flatten();
            status.is_some()
        });
        if !stopped {
            let _ = c.kill();
            let _ = c.wait();
            panic!("leash did not exit within 10s of SIGTERM\n{}", self.diagnostics());
        }
        status.unwrap()
    }

    /// Starts the daemon again with the same config (after `kill9` or
    /// `stop_leash`; a running daemon is stopped cleanly first).
    pub fn restart_leash(&mut self) {
        if self.daemon.is_some() {
            self.stop_leash();
        }
        self.spawn_daemon();
    }

    /// Sends SIGHUP (reload) to the daemon.
    pub fn sighup(&self) {
        let pid = self.daemon_pid().expect("leash is not running");
        kill(Pid::from_raw(pid as i32), Signal::SIGHUP).expect("SIGHUP");
    }

    // ---- the CLI ----

    /// Runs `leash <args> --socket <lab socket>` (also in LEASH_SOCKET).
    pub fn leash(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .args(args)
            .arg("--socket")
            .arg(self.socket())
            .env("LEASH_SOCKET", self.socket())
            .output()
            .expect("run leash")
    }

    /// Runs `leash <args>` without a socket (e.g. `check --config`).
    pub fn leash_offline(&self, args: &[&str]) -> Output {
        Command::new(&self.bin).args(args).env("LEASH_SOCKET", self.socket()).output().expect("run leash")
    }

    /// Runs `leash <args> --json`, asserts success and parses stdout.
    pub fn leash_json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.leash(&a);
        if !out.status.success() {
            panic!("leash {a:?} failed ({}):\n{}\n{}", out.status, text(&out.stderr), self.diagnostics());
        }
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("leash {a:?}: not JSON ({e}): {}", text(&out.stdout)))
    }

    /// Runs `leash <args>`, asserts success, returns stdout.
    pub fn leash_ok(&self, args: &[&str]) -> String {
        let out = self.leash(args);
        if !out.status.success() {
            panic!("leash {args:?} failed ({}):\n{}{}\n{}", out.status, text(&out.stdout), text(&out.stderr), self.diagnostics());
        }
        text(&out.stdout)
    }

    /// The entry for `mac` in `leash devices --json` (wherever the daemon
    /// nests its list).
    pub fn device_report(&self, mac: &str) -> Option<Value> {
        find_object(&self.leash_json(&["devices"]), &|o| o.get("mac").and_then(Value::as_str) == Some(mac))
    }

    // ---- waiting, with diagnostics on timeout ----

    /// Polls `cond` until `deadline`; on timeout panics with `what`, the
    /// daemon log, the syslog lines and leash's table.
    pub fn wait_until(&self, deadline: Duration, what: &str, cond: impl FnMut() -> bool) {
        if !wait::poll_until(deadline, cond) {
            panic!("timed out after {deadline:?} waiting for: {what}\n{}", self.diagnostics());
        }
    }

    /// Asserts that `cond` holds during the whole `window`.
    pub fn assert_holds_for(&self, window: Duration, what: &str, cond: impl FnMut() -> bool) {
        if !wait::holds_for(window, cond) {
            panic!("did not hold for {window:?}: {what}\n{}", self.diagnostics());
        }
    }

    /// What a failing test prints: daemon log, syslog, leash's table.
    pub fn diagnostics(&self) -> String {
        let table = self.router.try_exec(&["nft", "list", "table", "inet", "leash"]);
        let mut resolvers = String::new();
        for r in &self.resolvers {
            resolvers.push_str(&format!("---- {} ({}) ----\n{}", r.log.display(), r.ns, r.log_text()));
        }
        format!(
            "---- lab {} ({}) ----\n---- daemon log ----\n{}\n---- syslog ----\n{}\n---- nft list table inet leash ----\n{}{}{resolvers}",
            self.id,
            self.dir.display(),
            self.daemon_log(),
            self.syslog_lines().join("\n"),
            text(&table.stdout),
            text(&table.stderr)
        )
    }

    // ---- syslog ----

    /// Every datagram the daemon sent to its syslog socket, raw.
    pub fn syslog_lines(&self) -> Vec<String> {
        self.syslog.as_ref().map(SyslogSink::lines).unwrap_or_default()
    }

    /// The lab's syslog daemon stops reading (see `SyslogSink::pause`).
    pub fn pause_syslog(&self) {
        self.syslog.as_ref().expect("start leash first: it binds the syslog socket").pause();
    }

    pub fn resume_syslog(&self) {
        self.syslog.as_ref().expect("start leash first: it binds the syslog socket").resume();
    }

    /// The syslog lines that parse as leash lines.
    pub fn syslog_parsed(&self) -> Vec<LogLine> {
        self.syslog_lines().iter().filter_map(|l| syslog::parse(l)).collect()
    }

    /// Waits for a leash line matching `pred` and returns it.
    pub fn wait_syslog(&self, what: &str, pred: impl Fn(&LogLine) -> bool) -> LogLine {
        let mut found = None;
        self.wait_until(REACT_DEADLINE, &format!("syslog line: {what}"), || {
            found = self.syslog_parsed().into_iter().find(|l| pred(l));
            found.is_some()
        });
        found.unwrap()
    }

    /// Waits for a line with this verb and these exact `key=value` pairs.
    pub fn wait_syslog_verb(&self, verb: &str, pairs: &[(&str, &str)]) -> LogLine {
        self.wait_syslog(&format!("{verb} {pairs:?}"), |l| l.verb == verb && l.has(pairs))
    }

    // ---- nftables, seen from the kernel ----

    /// `nft -j list table inet leash` in the router; None when the table is absent.
    pub fn nft_json(&self) -> Option<Value> {
        let out = self.router.try_exec(&["nft", "-j", "list", "table", "inet", "leash"]);
        if !out.status.success() {
            return None;
        }
        Some(serde_json::from_slice(&out.stdout).expect("nft -j output is JSON"))
    }

    pub fn table_exists(&self) -> bool {
        self.nft_json().is_some()
    }

    /// The elements of one of leash's sets as text (empty when the table is absent).
    pub fn set_elements(&self, set: &str) -> Vec<String> {
        self.nft_json().map(|d| crate::nft::set_elements(&d, set)).unwrap_or_default()
    }

    pub fn set_has(&self, set: &str, elem: &str) -> bool {
        self.set_elements(set).iter().any(|e| e == elem)
    }

    /// Runs an nft script (`nft -f -`) in the router, e.g. to play fw4.
    pub fn nft_script(&self, script: &str) {
        let mut c = Command::new("ip")
            .args(["netns", "exec", &self.router.name, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nft");
        c.stdin.take().unwrap().write_all(script.as_bytes()).expect("write nft script");
        let out = c.wait_with_output().expect("nft");
        assert!(out.status.success(), "nft -f failed: {}\n{script}", text(&out.stderr));
    }

    /// Conntrack entries in the router matching `conntrack -L <filter>`.
    pub fn conntrack_count(&self, filter: &[&str]) -> usize {
        let mut args = vec!["conntrack", "-L"];
        args.extend_from_slice(filter);
        let out = self.router.try_exec(&args);
        // Exit status 1 with nothing listed just means "no entries".
        text(&out.stdout).lines().filter(|l| !l.trim().is_empty()).count()
    }

    // ---- traffic ----

    /// A TCP connection from device n.
    pub fn tcp_connect(&self, n: u8, addr: IpAddr, port: u16, timeout: Duration) -> std::io::Result<TcpStream> {
        netns::tcp_connect(&self.dev(n).name, addr, port, timeout)
    }

    /// Whether device n can open a TCP connection to addr:port within 1 s.
    pub fn can_connect(&self, n: u8, addr: IpAddr, port: u16) -> bool {
        self.tcp_connect(n, addr, port, Duration::from_secs(1)).is_ok()
    }

    /// One UDP datagram from device n.
    pub fn udp_send(&self, n: u8, addr: IpAddr, port: u16) {
        netns::udp_send(&self.dev(n).name, addr, port, b"leash-lab").expect("udp send");
    }

    /// A counting echo server on `[::]:port` in the WAN (every cloud host).
    pub fn wan_tcp_server(&self, port: u16) -> TcpServer {
        TcpServer::start(&self.wan.name, port)
    }

    /// A counting echo server in the router (192.168.7.1, fd00:7::1).
    pub fn router_tcp_server(&self, port: u16) -> TcpServer {
        TcpServer::start(&self.router.name, port)
    }

    /// A counting echo server in device n.
    pub fn device_tcp_server(&self, n: u8, port: u16) -> TcpServer {
        TcpServer::start(&self.dev(n).name, port)
    }

    // ---- DNS ----

    /// Starts the router's resolver: dnsmasq on br-lan (192.168.7.1 and
    /// fd00:7::1, port 53) answering `zone`, as dnsmasq serves a LAN on
    /// OpenWrt. Its answers to devices cross leash's `dns_out` chain.
    pub fn start_dns(&mut self, zone: &Zone) {
        let r = Resolver::start(&self.router.name, &[ip(ROUTER_V4), ip(ROUTER_V6)], &self.dir, "dnsmasq", zone);
        self.resolvers.push(r);
    }

    /// Starts an "outside resolver" (like 8.8.8.8) in the WAN on
    /// 198.51.100.20:53: devices that ask it directly get answers that the
    /// router only forwards.
    pub fn start_outside_dns(&mut self, zone: &Zone) {
        let r = Resolver::start(&self.wan.name, &[ip(dns::OUTSIDE_RESOLVER)], &self.dir, "dnsmasq-wan", zone);
        self.resolvers.push(r);
    }

    /// Device n asks `server` (UDP port 53) for `name`; the reply, or an
    /// error after 2 s.
    pub fn try_resolve(&self, n: u8, server: &str, name: &str, qtype: QType) -> std::io::Result<Reply> {
        dns::query(&self.dev(n).name, ip(server), name, qtype, Duration::from_secs(2))
    }

    /// Device n resolves `name` through `server`: the A/AAAA addresses of
    /// the answer (panics when no reply comes or the rcode is not NOERROR).
    pub fn resolve(&self, n: u8, server: &str, name: &str, qtype: QType) -> Vec<IpAddr> {
        match self.try_resolve(n, server, name, qtype) {
            Ok(r) if r.rcode == 0 => r.addrs,
            Ok(r) => panic!("device {n}: {server} answered rcode {} for {name} {qtype:?}\n{}", r.rcode, self.diagnostics()),
            Err(e) => panic!("device {n}: no answer from {server} for {name} {qtype:?}: {e}\n{}", self.diagnostics()),
        }
    }

    /// Queues the DNS answers to LAN devices to NFQUEUE `queue`, with
    /// bypass (they pass while nobody reads it), as `dns_hold = "external"`
    /// expects another firewall to: the router's resolver's answers on the
    /// output hook, outside resolvers' forwarded answers on the forward
    /// hook. This kernel has no nft `queue` expression, only the xtables
    /// NFQUEUE target (FACTS), so `iptables-nft` it is.
    pub fn queue_dns_answers(&self, queue: u16) {
        let q = queue.to_string();
        for tool in ["iptables-nft", "ip6tables-nft"] {
            for (chain, proto) in [("OUTPUT", "udp"), ("OUTPUT", "tcp"), ("FORWARD", "udp"), ("FORWARD", "tcp")] {
                let rule = [tool, "-A", chain, "-o", "br-lan", "-p", proto, "--sport", "53", "-m", "conntrack", "--ctdir", "REPLY", "-j", "NFQUEUE", "--queue-num", &q, "--queue-bypass"];
                let out = self.router.try_exec(&rule);
                assert!(out.status.success(), "{tool} NFQUEUE rule (apt-get install iptables): {}", text(&out.stderr));
            }
        }
    }

    /// Adds cloud hosts (addresses on the WAN's loopback).
    pub fn add_wan_hosts(&self, addrs: &[String]) {
        let file = self.dir.join("wan-hosts.batch");
        let body: String = addrs.iter().map(|a| format!("addr add {a}/{} dev lo\n", if a.contains(':') { 128 } else { 32 })).collect();
        std::fs::write(&file, body).expect("write batch");
        self.wan.ip(&["-batch", file.to_str().unwrap_or_default()]);
    }

    /// A UDP sink on every WAN host, counting datagrams per sender.
    pub fn wan_udp_counter(&self, port: u16) -> crate::netns::UdpCounter {
        crate::netns::UdpCounter::start(&self.wan.name, port)
    }

    // ---- WAN delay (the lab kernel has no netem) ----

    /// Delays every packet arriving in the WAN from the router by `ms`
    /// milliseconds (so the device ↔ WAN round trip grows by `ms`): an
    /// `iptables-nft … -j NFQUEUE` rule in the WAN's mangle PREROUTING on
    /// its uplink, and `tools/nfq_delay.py` holding each packet before its
    /// ACCEPT verdict. Stopped on drop.
    pub fn delay_wan(&mut self, ms: u32) {
        const QUEUE: &str = "7";
        let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/nfq_delay.py");
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.wan.name, "python3"])
            .arg(&tool)
            .args(["--queue", QUEUE, "--delay-ms", &ms.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nfq_delay.py");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
        if !line.starts_with("ready") {
            let _ = child.kill();
            let out = child.wait_with_output().map(|o| text(&o.stderr)).unwrap_or_default();
            panic!("nfq_delay.py did not start: {line:?} {out}");
        }
        self.helpers.push(child);
        for tool in ["iptables-nft", "ip6tables-nft"] {
            let out = self.wan.try_exec(&[tool, "-t", "mangle", "-A", "PREROUTING", "-i", "eth0", "-j", "NFQUEUE", "--queue-num", QUEUE]);
            assert!(out.status.success(), "{tool} NFQUEUE rule (apt-get install iptables): {}", text(&out.stderr));
        }
    }

    // ---- helper programs ----

    /// A cargo example of the leash crate (`cargo build -p leash --examples`),
    /// beside the leash binary: `<target>/<profile>/examples/<name>`.
    pub fn example_bin(name: &str) -> PathBuf {
        let bin = leash_bin();
        let p = bin.parent().map(|d| d.join("examples").join(name)).unwrap_or_default();
        assert!(p.exists(), "{} not found: build it first (cargo build -p leash --examples)", p.display());
        p
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.diagnostics());
        }
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for mut c in self.helpers.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.resolvers.clear();
        self.syslog = None;
        if std::env::var_os("LEASH_LAB_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        // The namespaces (fields) are dropped next: processes inside are
        // killed, then each namespace is deleted.
    }
}

/// The binary under test: `LEASH_BIN`, else `leash` beside this test's
/// target dir (`<target>/debug/deps/<test>` → `<target>/debug/leash`), else
/// `<workspace>/target/debug/leash`.
pub fn leash_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("LEASH_BIN") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::current_exe().ok().and_then(|e| Some(e.parent()?.parent()?.join("leash"))) {
        if p.exists() {
            return p;
        }
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/leash")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The first object (depth first) in `v` for which `pred` holds.
pub fn find_object(v: &Value, pred: &dyn Fn(&serde_json::Map<String, Value>) -> bool) -> Option<Value> {
    match v {
        Value::Object(m) if pred(m) => Some(v.clone()),
        Value::Object(m) => m.values().find_map(|x| find_object(x, pred)),
        Value::Array(a) => a.iter().find_map(|x| find_object(x, pred)),
        _ => None,
    }
}
