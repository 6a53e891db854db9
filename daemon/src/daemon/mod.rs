//! The daemon loop: one current-thread runtime, one owner of all state (the
//! engine). Kernel events, control requests, signals and a housekeeping tick
//! arrive here; the engine's effects are carried out through the adapters.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::alert::Severity;
use crate::config::{self, Config, ConfigErrors};
use crate::control::protocol::{Request, Response};
use crate::control::server;
use crate::engine::{CommandError, Cut, Effect, Engine, Flow, FlowOutcome};
use crate::engine::identify::{Lookups, Plan, Waiting};
use crate::kernel::{CtRead, Kernel, RouteEvent};
use crate::nft::watch::Watch;
use crate::nft::{self, Elem, SetChange};
use crate::policy::Policy;
use crate::policy::selector::Selector;
use crate::store::state::Store;
use crate::syslog::Syslog;

mod commands;
mod effects;
mod fetch;
mod heal;
mod subscriptions;
mod hold;
mod resync;

/// Flows and DNS answers of LAN addresses whose MAC is not known yet wait
/// this long for the neighbour entry (at most `identify::MAX_WAITING`).
const PENDING_FOR: u64 = 5;
/// While something waits, addresses whose backoff ended are asked about
/// again this often.
const LOOKUP_RETRY: Duration = Duration::from_millis(100);
/// A loop turn longer than this is logged (debug).
const SLOW_TURN: Duration = Duration::from_millis(50);
/// DNS datagrams taken ahead of a conntrack event, at most (one loop turn).
const DNS_CATCH_UP: usize = 16;
/// NFLOG datagrams (one answer each) judged in one DNS turn, their flows
/// looked up in one round trip and their elements sent in one batch.
const MAX_DNS_BATCH: usize = 256;

/// Waiting for its device to be identified.
enum Parked {
    Flow(Flow),
    Dns(std::net::IpAddr, Vec<crate::codec::dns::AddrRecord>, crate::names::trust::Resolver),
}
/// How long a clean stop waits for syslog to take the queued lines.
const SYSLOG_DRAIN: Duration = Duration::from_secs(1);
/// Seconds between readings of running flows' byte counters.
const COUNTERS_EVERY: u64 = 10;
const ACCT_SYSCTL: &str = "/proc/sys/net/netfilter/nf_conntrack_acct";

/// Bytes per destination need conntrack's accounting; it is off by default
/// on many kernels. Flows that began before it was switched on count nothing.
fn enable_conntrack_accounting() {
    match std::fs::read_to_string(ACCT_SYSCTL) {
        Ok(v) if v.trim() == "1" => {}
        Ok(_) => match std::fs::write(ACCT_SYSCTL, "1") {
            Ok(()) => tracing::info!(sysctl = ACCT_SYSCTL, "turned on conntrack byte accounting for destinations and upload_alert"),
            Err(e) => tracing::warn!(sysctl = ACCT_SYSCTL, error = %e, "cannot turn on conntrack byte accounting; bytes will show as 0"),
        },
        Err(e) => tracing::warn!(sysctl = ACCT_SYSCTL, error = %e, "cannot read conntrack byte accounting setting"),
    }
}

/// Elements that stay until removed (the persisted quarantines).
fn untimed(elements: &[Elem]) -> Vec<(Elem, Option<Duration>)> {
    elements.iter().map(|e| (*e, None)).collect()
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Reads the configuration and its list files; nothing is half-applied.
pub fn load_policy(path: Option<&Path>) -> Result<Policy, ConfigErrors> {
    let config: Config = config::load(path)?;
    let lists = crate::policy::lists::load_all(&config)?;
    let geo = crate::policy::geoip::GeoIp::open(&config.geoip).map_err(|e| {
        use crate::policy::geoip::GeoipError::*;
        let path = match &e {
            Read { path, .. } | Mmdb { path, .. } | NoEntries { path, .. } => path,
        };
        let key = if config.geoip.country_db.as_ref() == Some(path) { "geoip.country_db" } else { "geoip.asn_db" };
        ConfigErrors(vec![config::ConfigError { file: config.source.clone(), line: 0, key: key.into(), message: e.to_string() }])
    })?;
    Ok(Policy::new(config, lists).with_geo(geo))
}

struct Daemon {
    engine: Engine,
    kernel: Kernel,
    syslog: Syslog,
    store: Store,
    journal: crate::store::journal::Journal,
    /// Destination cuts waiting for the next sweep (see `effects`).
    sweep: Vec<Cut>,
    config_path: PathBuf,
    /// What waits for its device, by address, and when to ask the kernel.
    pending: Waiting<Parked>,
    lookups: Lookups,
    /// The origin of `Lookups`' monotonic milliseconds.
    clock: std::time::Instant,
    /// A resync with the conntrack table in progress.
    resync: Option<resync::Resync>,
    leases_mtime: Option<SystemTime>,
    timing: EnforceTiming,
    dns_bound: bool,
    /// How DNS answers reach leash: decided at start (`dns_hold`, and
    /// whether this kernel has nft `queue`), kept until restart.
    dns_path: nft::DnsPath,
    vendors: crate::names::vendor::Vendors,
    /// When byte counters were last read from a dump (for upload_alert).
    counters_read: u64,
    /// Whether someone else damaged the table, and when to rebuild it.
    watch: Watch,
    /// The alert lines sent lately (`leash alerts`).
    recent: crate::alert::Recent,
    /// Subscribed lists: when each is fetched, and how it went.
    schedule: crate::policy::refresh::Schedule,
    fetch_client: Option<fetch::Client>,
    fetched: mpsc::UnboundedSender<fetch::Outcome>,
    notify: crate::notify::Notify,
    /// The conntrack event buffer asked for at start (`conntrack_buffer`).
    ct_buffer: usize,
}

/// The RAM (`MemTotal` of /proc/meminfo), for `conntrack_buffer = "auto"`.
pub(crate) fn mem_total() -> Option<u64> {
    crate::config::meminfo_total(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

/// How fast decisions reach the kernel: from the conntrack event's arrival
/// to the nf_tables ack of its set element (shown by `status`, read by the
/// bench script).
#[derive(Debug, Default, Clone, serde::Serialize)]
struct EnforceTiming {
    last_us: u64,
    max_us: u64,
    count: u64,
    /// CLOCK_MONOTONIC (µs) of the last ack: comparable with a device's
    /// clock reading in another namespace of the same machine.
    last_acked_monotonic_us: u64,
    #[serde(skip)]
    acked: Option<std::time::Instant>,
}

pub fn monotonic_us() -> u64 {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(0, |t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000)
}

pub async fn run(config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let policy = load_policy(config_path.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::policy::lists::release_freed_memory();
    let config_path = policy.config.source.clone();
    let daemon_cfg = policy.config.daemon.clone();
    let mut syslog = Syslog::new(&daemon_cfg.syslog);

    let mut store = Store::new(&daemon_cfg.state_dir);
    let (state, problem) = store.load();
    if let Some(e) = problem {
        tracing::error!(error = %e, "persisted state unreadable, set aside; starting without it");
        syslog.send(Severity::Err, &format!("state file unreadable, set aside: {e}"));
    }
    let mut engine = Engine::new(policy, state, now());
    // Blocks persisted in the journal: back in force before anything is judged.
    let mut journal = crate::store::journal::Journal::new(&daemon_cfg.state_dir);
    match journal.load(now()) {
        Ok((blocks, bad)) => {
            let n = engine.restore_blocks(blocks.into_values(), now());
            if bad > 0 {
                tracing::error!(bad_lines = bad, file = %journal.path().display(), "block journal has unreadable lines (a torn write?); skipped");
                syslog.send(Severity::Err, &format!("block journal {} had {bad} unreadable lines, skipped", journal.path().display()));
            }
            tracing::info!(blocks = n, "restored persisted blocks");
        }
        Err(e) => {
            tracing::error!(error = %e, "block journal unreadable; starting without persisted blocks");
            syslog.send(Severity::Err, &format!("block journal unreadable: {e}"));
        }
    }
    // Rewritten clean at every start: a torn tail must not swallow the next line.
    if let Err(e) = journal.compact(&engine.block_entries()) {
        tracing::error!(error = %e, "rewriting the block journal failed");
    }

    // Joining conntrack's and nf_tables' event groups is the first thing
    // that needs CAP_NET_ADMIN: say so when that is what is missing.
    let ct_buffer = daemon_cfg.conntrack_buffer.bytes(mem_total());
    let kernel = Kernel::open(ct_buffer).await.map_err(|e| {
        let eperm = e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied);
        e.context(if eperm { "opening netlink sockets (leash needs CAP_NET_ADMIN)" } else { "opening netlink sockets" })
    })?;
    tracing::info!(conntrack_buffer = ct_buffer, granted = ?kernel.ct_buffer_granted(), "conntrack event buffer");
    // Subscribe before dumping, so nothing falls between dump and events.
    // Their effects wait for the table (persisted state, a new address of a
    // quarantined device): the ruleset below already holds such elements.
    let mut start_fx = Vec::new();
    engine.counters.neighbour_dumps += 1;
    for ev in kernel.dump_routes().await.context("reading interfaces, addresses and neighbours")? {
        apply_route(&mut engine, ev, &mut start_fx);
    }
    engine.cut_bypassing_all(&mut start_fx);
    let listener = server::bind(&daemon_cfg.socket)?;

    // The nf_tables notification socket is open already (Kernel::open), so
    // any change to the table from now on is seen.
    let watch = Watch::new(&daemon_cfg.nft_table, kernel.nft_port());
    let (fetched, fetched_rx) = mpsc::unbounded_channel();
    let mut d = Daemon { engine, kernel, syslog, store, journal, sweep: Vec::new(), config_path, pending: Waiting::default(), lookups: Lookups::default(), clock: std::time::Instant::now(), resync: None, leases_mtime: None, timing: EnforceTiming::default(), dns_bound: false, dns_path: hold::initial_dns_path(&daemon_cfg), counters_read: 0, vendors: crate::names::vendor::Vendors::new(), watch, schedule: Default::default(), fetch_client: None, fetched, recent: crate::alert::Recent::new(crate::alert::RECENT_LINES), notify: crate::notify::Notify::new(), ct_buffer };
    d.start_subscriptions();
    // One transaction: the quarantines and the persisted blocks (with their
    // remaining timeouts) are in force from the table's first packet.
    d.install_table().await?;
    d.name_vendors(&mut start_fx);
    d.execute(start_fx).await;
    d.bind_dns().await;
    enable_conntrack_accounting();
    let fx = d.read_leases();
    d.execute(fx).await;
    tracing::info!(config = %d.config_path.display(), mode = ?daemon_cfg.mode, table = %daemon_cfg.nft_table, "leash started");
    // Flows that existed before we started get judged too (in the loop, a
    // piece per turn).
    d.begin_resync(false);

    let local = tokio::task::LocalSet::new();
    let result = local.run_until(d.main_loop(listener, fetched_rx)).await;
    // Closing the queue socket drops what it holds: let it go first.
    d.release_all_held();
    let keep = d.engine.policy().config.daemon.keep_on_exit;
    let table = d.engine.policy().config.daemon.nft_table.clone();
    let outcome = if keep {
        let script = nft::ruleset(&d.layout(), &untimed(&d.engine.persisted_elements()));
        nft::apply::run_script("table", &script).map(drop)
    } else {
        nft::apply::delete_table(&table)
    };
    if let Err(e) = outcome {
        tracing::error!(error = %e, "cleaning up the nftables table on exit");
    }
    let _ = d.journal.sync();
    let _ = std::fs::remove_file(&d.engine.policy().config.daemon.socket);
    // Alert lines still queued get a short, bounded chance to go out.
    d.syslog.drain(SYSLOG_DRAIN).await;
    tracing::info!(keep_on_exit = keep, "leash stopped");
    result
}

impl Daemon {
    async fn main_loop(&mut self, listener: tokio::net::UnixListener, mut fetched: mpsc::UnboundedReceiver<fetch::Outcome>) -> anyhow::Result<()> {
        let (jobs_tx, mut jobs) = mpsc::channel::<server::Job>(32);
        // A panic in the control server must end the daemon (procd respawns
        // it) whatever the panic strategy: the OpenWrt feed builds with
        // panic=unwind, under which tokio would catch it and leave the
        // daemon running without its control socket.
        let mut server = tokio::task::spawn_local(server::serve(listener, jobs_tx));
        let mut hup = signal(SignalKind::hangup())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut retry = tokio::time::interval(LOOKUP_RETRY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut ct_buf = Vec::new();
        let mut rt_buf = Vec::new();
        let mut dns_buf = Vec::new();
        let mut held_buf = Vec::new();
        let mut nft_buf = Vec::new();
        loop {
            // Each arm does a bounded piece of work, so that control
            // requests interleave with any flood; a turn that still takes
            // long is logged with its arm (at debug: a busy router is not a fault).
            let now = std::time::Instant::now;
            let heal_at = self.watch.due().map(tokio::time::Instant::from_std);
            let (arm, began) = tokio::select! {
                r = self.kernel.read_held(&mut held_buf), if self.kernel.dns_queue_bound() => {
                    let t = now();
                    self.on_held(r, &mut held_buf).await;
                    ("dns-held", t)
                }
                r = self.kernel.read_dns(&mut dns_buf), if self.dns_bound => {
                    let t = now();
                    self.on_dns(r, &mut dns_buf).await;
                    ("dns", t)
                }
                r = self.kernel.read_ct(&mut ct_buf) => {
                    let t = now();
                    self.on_ct(r, t, &mut dns_buf).await;
                    ("conntrack", t)
                }
                r = resync::next_batch(&mut self.resync), if self.resync_dumping() => {
                    let t = now();
                    self.dump_turn(r).await;
                    ("resync", t)
                }
                _ = std::future::ready(()), if self.resync_draining() => {
                    let t = now();
                    self.drain_turn();
                    ("drain", t)
                }
                r = self.kernel.read_route(&mut rt_buf) => {
                    let t = now();
                    self.on_route(r).await;
                    ("rtnetlink", t)
                }
                r = self.kernel.read_nft_events(&mut nft_buf) => {
                    let t = now();
                    self.on_nft_events(r, &mut nft_buf).await;
                    ("nft-events", t)
                }
                _ = tokio::time::sleep_until(heal_at.unwrap_or_else(tokio::time::Instant::now)), if heal_at.is_some() => {
                    let t = now();
                    self.heal().await;
                    ("heal", t)
                }
                Some((cmd, mac)) = self.notify.commands.recv() => {
                    let t = now();
                    let resp = self.handle(crate::notify::Notify::request(cmd, mac.clone())).await;
                    tracing::info!(%mac, ?cmd, response = ?resp, "MQTT command");
                    ("mqtt", t)
                }
                Some((req, reply)) = jobs.recv() => {
                    let t = now();
                    let resp = self.handle(req).await;
                    let _ = reply.send(resp);
                    ("control", t)
                }
                Some(outcome) = fetched.recv() => {
                    let t = now();
                    self.on_fetched(outcome).await;
                    ("lists", t)
                }
                _ = hup.recv() => {
                    let t = now();
                    let _ = self.reload().await;
                    ("reload", t)
                }
                _ = term.recv() => return Ok(()),
                _ = int.recv() => return Ok(()),
                _ = tick.tick() => {
                    let t = now();
                    self.housekeeping().await;
                    ("housekeeping", t)
                }
                _ = retry.tick(), if !self.pending.is_empty() => {
                    let t = now();
                    let mut fx = Vec::new();
                    let waiting: Vec<std::net::IpAddr> = self.pending.addrs().collect();
                    self.identify(waiting, &mut fx).await;
                    self.execute(fx).await;
                    ("identify", t)
                }
                // Queued alert lines go out as soon as syslog reads again.
                _ = self.syslog.writable(), if self.syslog.pending() > 0 => {
                    let t = now();
                    self.syslog.flush();
                    ("syslog", t)
                }
                r = &mut server => anyhow::bail!("control socket server ended: {r:?}"),
            };
            let held = began.elapsed();
            if held >= SLOW_TURN {
                tracing::debug!(arm, ms = held.as_millis() as u64, "event loop turn took long");
            }
            // Let the control server's tasks run between turns: they run
            // only when this loop yields, and under a flood some arm is
            // always ready, so it would yield only when tokio's budget runs out.
            tokio::task::yield_now().await;
        }
    }

    async fn on_ct(&mut self, r: CtRead, arrived: std::time::Instant, dns_buf: &mut Vec<u8>) {
        let now = now();
        let mut fx = Vec::new();
        match r {
            CtRead::Flows(flows, ended) => {
                self.engine.counters.ct_new_events += flows.len() as u64;
                let mut unknown = self.catch_up_dns(dns_buf, &mut fx, DNS_CATCH_UP).await;
                for f in flows {
                    if self.engine.on_flow(&f, now, &mut fx) == FlowOutcome::Unidentified {
                        self.park(f.src, Parked::Flow(f), now);
                        unknown.push(f.src);
                    }
                }
                for c in &ended {
                    self.engine.on_counters(c, true, now, &mut fx);
                }
                if !unknown.is_empty() {
                    self.identify(unknown, &mut fx).await;
                }
            }
            CtRead::Lost => {
                self.engine.counters.events_lost += 1;
                tracing::warn!(overruns = self.engine.counters.events_lost, "conntrack events lost (receive buffer overrun); resyncing from a dump");
                self.execute(fx).await;
                self.begin_resync(true);
                return;
            }
            CtRead::Failed(e) => {
                self.engine.counters.kernel_errors += 1;
                tracing::error!(error = %e, "reading conntrack events");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let enforces = fx.iter().any(|e| {
            matches!(e, Effect::Set(SetChange::Add { elem: Elem::Block(..) | Elem::QuarantineMac(_), .. }))
        });
        self.timing.acked = None;
        self.execute(fx).await;
        if let (true, Some(acked)) = (enforces, self.timing.acked) {
            let us = acked.duration_since(arrived).as_micros() as u64;
            let t = &mut self.timing;
            t.last_us = us;
            t.max_us = t.max_us.max(us);
            t.count += 1;
        }
    }

    /// Keeps a flow or answer until the device at `addr` is identified.
    fn park(&mut self, addr: std::net::IpAddr, p: Parked, now: u64) {
        for (addr, gone) in self.pending.park(addr, p, now + PENDING_FOR) {
            let c = &mut self.engine.counters;
            c.pending_evicted += 1;
            if matches!(gone, Parked::Dns(..)) {
                c.dns_unknown_client += 1;
            }
            if c.pending_evicted.is_power_of_two() {
                tracing::warn!(%addr, dropped = c.pending_evicted, "too many flows from unknown devices; dropped the oldest unjudged");
            }
        }
    }

    async fn on_dns(&mut self, r: anyhow::Result<crate::kernel::Logged>, buf: &mut Vec<u8>) {
        match r {
            Ok((mut answers, bypass, bad)) => {
                let mut fx = Vec::new();
                self.take_bypass(&bypass, &mut fx);
                self.kernel.look_up_flows(&mut answers).await;
                let mut unknown = self.take_answers(answers, bad, &mut fx);
                // The answers queued behind this one join it: their flows
                // are looked up and their blocks sent as one batch each.
                unknown.extend(self.catch_up_dns(buf, &mut fx, MAX_DNS_BATCH).await);
                if !unknown.is_empty() {
                    self.identify(unknown, &mut fx).await;
                }
                self.execute(fx).await;
            }
            Err(e) if nflog_overran(&e) => self.dns_overran(),
            Err(e) => {
                self.engine.counters.kernel_errors += 1;
                tracing::error!(error = %e, "reading DNS answers from NFLOG");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Packets the kernel cut for `dns_bypass`: alert lines, never names.
    fn take_bypass(&mut self, bypass: &[crate::engine::BypassAttempt], fx: &mut Vec<Effect>) {
        let now = now();
        for b in bypass {
            self.engine.on_bypass(b, now, fx);
        }
    }

    /// Judges snooped answers; returns the clients whose answers wait for their device.
    fn take_answers(&mut self, answers: Vec<crate::kernel::Snooped>, bad: u64, fx: &mut Vec<Effect>) -> Vec<std::net::IpAddr> {
        let now = now();
        self.engine.counters.dns_errors += bad;
        let mut unknown = Vec::new();
        for (a, provenance) in answers {
            // Spoofed or unasked: names nothing, changes nothing.
            let Some(via) = self.engine.vouch(&a, &provenance) else { continue };
            if self.engine.on_dns(a.client, &a.records, via, now, fx) {
                continue;
            }
            // The router sent this answer, so it knows the device's
            // MAC: its neighbour event just has not been read yet.
            if self.engine.net.is_lan_addr(a.client) {
                unknown.push(a.client);
                self.park(a.client, Parked::Dns(a.client, a.records, via), now);
            } else {
                self.engine.counters.dns_unknown_client += 1;
            }
        }
        unknown
    }

    /// Takes the DNS answers already queued. An answer's NFLOG copy is
    /// queued before the device even has it, so before its flow's NEW
    /// event: taking them first means a flow is judged with its names,
    /// whichever socket the event loop happened to poll first.
    /// At most `max` datagrams: a DNS flood must not hold the loop.
    async fn catch_up_dns(&mut self, buf: &mut Vec<u8>, fx: &mut Vec<Effect>, max: usize) -> Vec<std::net::IpAddr> {
        let mut answers = Vec::new();
        let mut bad = 0;
        for _ in 0..max {
            if !self.dns_bound {
                break;
            }
            match self.kernel.try_read_dns(buf) {
                Ok(Some((more, bypass, b))) => {
                    answers.extend(more);
                    self.take_bypass(&bypass, fx);
                    bad += b;
                }
                Ok(None) => break,
                Err(e) if nflog_overran(&e) => {
                    self.dns_overran();
                    break;
                }
                Err(e) => {
                    self.engine.counters.kernel_errors += 1;
                    tracing::error!(error = %e, "reading DNS answers from NFLOG");
                    break;
                }
            }
        }
        if answers.is_empty() && bad == 0 {
            return Vec::new();
        }
        // One round trip asks for the flows of the whole batch.
        self.kernel.look_up_flows(&mut answers).await;
        self.take_answers(answers, bad, fx)
    }

    /// The NFLOG queue overran: answers were lost (the kernel never sends
    /// them again). Their flows are still judged from conntrack, by address,
    /// country and AS; counted, logged at powers of two, and read on at once.
    fn dns_overran(&mut self) {
        self.engine.counters.dns_overruns += 1;
        let n = self.engine.counters.dns_overruns;
        if n.is_power_of_two() {
            tracing::warn!(overruns = n, "DNS answers lost: the NFLOG receive queue overran");
        }
    }

    async fn bind_dns(&mut self) {
        let queue = match self.dns_path {
            nft::DnsPath::Hold { queue } => Some(queue),
            nft::DnsPath::External => Some(self.engine.policy().config.daemon.dns_queue),
            nft::DnsPath::Snoop { .. } => None,
        };
        if let Some(q) = queue {
            self.bind_queue(q).await;
        }
        // Bound whatever the path: with answers held it carries the
        // dns_bypass cut logs alone.
        let group = self.engine.policy().config.daemon.dns_nflog_group;
        match self.kernel.bind_dns(group).await {
            Ok(with_ct) => {
                self.dns_bound = true;
                if !with_ct {
                    tracing::info!(group, "this kernel cannot attach conntrack entries to NFLOG packets (no conntrack netlink glue): leash looks up each DNS answer's flow itself");
                }
            }
            Err(e) => {
                self.dns_bound = false;
                tracing::error!(error = %e, group, "DNS answers will not be seen: destinations are judged by address, country and AS only");
                self.syslog.send(Severity::Err, &format!("cannot read DNS answers from NFLOG group {group}: {e:#}"));
            }
        }
    }

    async fn on_route(&mut self, r: anyhow::Result<Vec<RouteEvent>>) {
        match r {
            Ok(events) => {
                let mut fx = Vec::new();
                for ev in events {
                    self.apply_route(ev, &mut fx);
                }
                self.execute(fx).await;
            }
            Err(e) => {
                self.engine.counters.kernel_errors += 1;
                tracing::error!(error = %e, "reading rtnetlink events");
                if let Ok(events) = self.kernel.dump_routes().await {
                    self.engine.counters.neighbour_dumps += 1;
                    let mut fx = Vec::new();
                    for ev in events {
                        self.apply_route(ev, &mut fx);
                    }
                    self.execute(fx).await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Asks the kernel about unidentified LAN addresses, as `Lookups`
    /// allows: each address alone (RTM_GETNEIGH), or on kernels without
    /// that the whole table, rarely. What waited for an address found is
    /// judged at once (`apply_route`).
    async fn identify(&mut self, candidates: Vec<std::net::IpAddr>, fx: &mut Vec<Effect>) {
        let now_ms = self.clock.elapsed().as_millis() as u64;
        match self.lookups.plan(candidates, now_ms) {
            Plan::Nothing => {}
            Plan::LookUp(addrs) => {
                let asks: Vec<(u32, std::net::IpAddr)> = addrs.iter().filter_map(|a| Some((self.engine.net.lan_if_of(*a)?, *a))).collect();
                self.engine.counters.neighbour_lookups += asks.len() as u64;
                match self.kernel.lookup_neighbours(&asks).await {
                    Ok(events) => {
                        for ev in events {
                            self.apply_route(ev, fx);
                        }
                    }
                    Err(e) if e.downcast_ref::<crate::kernel::socket::NlError>().and_then(|e| e.errno()) == Some(libc::EOPNOTSUPP) => {
                        tracing::warn!(error = %e, "this kernel cannot look up single neighbours; reading the whole table instead, a few times a second at most");
                        self.lookups.lookups_unsupported();
                    }
                    Err(e) => tracing::warn!(error = %e, "looking up neighbour entries failed"),
                }
            }
            Plan::Dump => {
                self.engine.counters.neighbour_dumps += 1;
                match self.kernel.dump_neighbours().await {
                    Ok(events) => {
                        for ev in events {
                            self.apply_route(ev, fx);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "reading the neighbour table failed"),
                }
            }
        }
    }

    /// The engine announces new devices without their vendor (a file
    /// lookup): filled in here.
    fn name_vendors(&mut self, fx: &mut [Effect]) {
        for e in fx {
            if let Effect::Log(a) = e {
                if a.verb == crate::alert::Verb::Device {
                    if let Some(v) = a.get("device").and_then(|m| m.parse().ok()).and_then(|m| self.vendors.of(m)) {
                        a.set("vendor", v);
                    }
                }
            }
        }
    }

    /// A route event, and then what waited for a neighbour it identified.
    fn apply_route(&mut self, ev: RouteEvent, fx: &mut Vec<Effect>) {
        let learned = match &ev {
            RouteEvent::Neigh(n) if n.mac.is_some() && !n.deleted => Some(n.ip),
            _ => None,
        };
        let first = fx.len();
        apply_route(&mut self.engine, ev, fx);
        self.name_vendors(&mut fx[first..]);
        let Some(ip) = learned else { return };
        if self.engine.devices.mac_of(ip).is_none() {
            return;
        }
        self.lookups.found(ip);
        if self.pending.is_waiting(ip) || self.pending.owes(ip) {
            self.judge_waiting(ip, fx);
        }
    }

    /// Judges what waited for the device at `ip`, now identified; at most
    /// `identify::MAX_WAITING_PER_ADDR` items.
    fn judge_waiting(&mut self, ip: std::net::IpAddr, fx: &mut Vec<Effect>) {
        let now = now();
        for p in self.pending.take(ip) {
            let judged = match &p {
                Parked::Flow(f) => self.engine.on_flow(f, now, fx) != FlowOutcome::Unidentified,
                Parked::Dns(client, records, via) => self.engine.on_dns(*client, records, *via, now, fx),
            };
            if !judged {
                // Identified a moment ago: cannot happen, but never loop on it.
                if let Parked::Flow(_) = p {
                    self.engine.counters.flows_unidentified -= 1;
                }
                self.park(ip, p, now);
            }
        }
    }

    /// What waited in vain: counted, and logged at powers of two (a flood
    /// of spoofed sources would write a line per flow).
    fn expire_waiting(&mut self, now: u64) {
        for (addr, p) in self.pending.expire(now) {
            let c = &mut self.engine.counters;
            c.pending_expired += 1;
            let log = c.pending_expired.is_power_of_two();
            match p {
                Parked::Flow(f) if log => {
                    tracing::warn!(src = %f.src, dst = %f.dst, expired = c.pending_expired, "flow from a LAN address with no known MAC; not judged")
                }
                Parked::Dns(..) => {
                    c.dns_unknown_client += 1;
                    if log {
                        tracing::warn!(client = %addr, expired = c.pending_expired, "DNS answer to a LAN address with no known MAC; not judged");
                    }
                }
                Parked::Flow(_) => {}
            }
        }
    }

    async fn housekeeping(&mut self) {
        let now = now();
        self.check_table().await;
        // Reconnects to a restarted or late syslog daemon (writability
        // cannot say when a socket appears), and retries after ENOBUFS.
        if self.syslog.pending() > 0 {
            self.syslog.flush();
        }
        let mut fx = Vec::new();
        self.engine.tick(now, &mut fx);
        self.execute(fx).await;
        self.sweep_cuts().await;
        if let Err(e) = self.journal.sync() {
            tracing::error!(error = %e, "syncing the block journal failed");
        }
        if self.journal.wants_compaction(self.engine.block_count()) {
            if let Err(e) = self.journal.compact(&self.engine.block_entries()) {
                tracing::error!(error = %e, "compacting the block journal failed");
            }
        }
        let fx = self.read_leases();
        self.execute(fx).await;
        // Long uploads end late: read their counters while they run.
        let watch_uploads = self.engine.policy().config.profiles.values().any(|p| p.upload_alert.is_some());
        if watch_uploads && now >= self.counters_read + COUNTERS_EVERY {
            let mut fx = Vec::new();
            self.read_counters(now, &mut fx).await;
            self.execute(fx).await;
        }
        self.expire_waiting(now);
        // Flows dropped unjudged for room are still in the conntrack
        // table: once their device is known and the flood has passed,
        // judge it again.
        if self.resync.is_none() && self.pending.recovery_due(self.clock.elapsed().as_millis() as u64) {
            self.engine.counters.pending_recoveries += 1;
            tracing::info!(dropped = self.engine.counters.pending_evicted, "judging the conntrack table again for the flows dropped unjudged");
            self.begin_resync(false);
        }
        self.start_fetches(now);
        self.notify.tick(&self.engine.policy().config.notify, || self.engine.device_reports(now));
    }

    /// Accounts the bytes of running flows (a conntrack dump).
    async fn read_counters(&mut self, now: u64, fx: &mut Vec<Effect>) {
        self.counters_read = now;
        let engine = &mut self.engine;
        if let Err(e) = self.kernel.dump_counters(|c| engine.on_counters(c, false, now, fx)).await {
            tracing::warn!(error = %e, "reading flow counters failed");
        }
    }

    /// Reads the lease file when it changed; the effects (a device of a
    /// `dns_bypass = "block"` profile gets its element) are the caller's.
    fn read_leases(&mut self) -> Vec<Effect> {
        let mut fx = Vec::new();
        let path = &self.engine.policy().config.daemon.leases;
        let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if mtime == self.leases_mtime {
            return fx;
        }
        self.leases_mtime = mtime;
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let (leases, bad) = crate::names::leases::parse(&text);
        if bad > 0 {
            tracing::warn!(file = %path.display(), bad_lines = bad, "lease file has lines leash cannot read");
        }
        self.engine.set_leases(&leases, now(), &mut fx);
        fx
    }

}

/// Whether a DNS read failed because the kernel dropped answers (ENOBUFS).
fn nflog_overran(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<crate::kernel::socket::RecvError>(), Some(crate::kernel::socket::RecvError::Overrun))
}

fn apply_route(engine: &mut Engine, ev: RouteEvent, fx: &mut Vec<Effect>) {
    let now = now();
    match ev {
        RouteEvent::Link(l) if l.deleted => engine.net.link_gone(l.ifindex),
        RouteEvent::Link(l) => engine.net.link(l.ifindex, &l.name),
        RouteEvent::Addr(a) if a.deleted => engine.net.addr_gone(a.ifindex, a.addr),
        RouteEvent::Addr(a) => engine.net.addr(a.ifindex, a.addr, a.prefix_len),
        RouteEvent::Neigh(n) => engine.on_neighbour(n.ifindex, n.ip, n.mac, n.deleted, now, fx),
    }
}
