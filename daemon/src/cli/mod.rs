//! The command line (SPEC §4): argument parsing and output. Queries go to
//! the daemon over the control socket; `check` and `daemon` run here.


pub mod rpcd;
pub mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use serde_json::Value;

use crate::control::client::{self, DEFAULT_SOCKET};
use crate::control::protocol::Request;


const USAGE: &str = "usage: leash <command> [options]

  daemon [--config PATH]              run the daemon in the foreground
  check [--config PATH]               validate configuration and lists
  status                              a short summary: mode, uptime, devices, flows, DNS, rules, last alerts
  devices                             devices seen and configured
  destinations DEVICE                 what a device talked to: names, country, AS, bytes
  explain DEVICE DESTINATION          the verdict and the rule that gives it
  consent DEVICE SELECTOR [--for D]   grant consent (persisted; --for 15m: it expires by itself)
  revoke DEVICE SELECTOR              withdraw a granted consent
  quarantine DEVICE                   cut a device off the internet (persisted)
  release DEVICE                      end a quarantine
  reload                              re-read the configuration (as SIGHUP)
  alerts [--since D]                  the recent alert lines, newest last
  lists                               each list: source, entries, bad lines, last refresh, last error
  rpcd list | rpcd call METHOD        the rpcd exec plugin protocol (ubus object leash)

options: --json (machine-readable output), --socket PATH (or LEASH_SOCKET),
         --version, --help
DEVICE: a MAC address, a configured or DHCP name, or an IP address.";

struct Args {
    words: Vec<String>,
    json: bool,
    socket: Option<PathBuf>,
    config: Option<PathBuf>,
    /// `consent --for`, `alerts --since`: durations as the configuration writes them.
    duration: Option<String>,
    since: Option<String>,
}

fn parse(args: &[String]) -> anyhow::Result<Args> {
    let mut a = Args { words: Vec::new(), json: false, socket: None, config: None, duration: None, since: None };
    let mut it = args.iter();
    while let Some(w) = it.next() {
        match w.as_str() {
            "--json" => a.json = true,
            "--socket" => a.socket = Some(it.next().context("--socket needs a path")?.into()),
            "--config" | "-c" => a.config = Some(it.next().context("--config needs a path")?.into()),
            "--for" => a.duration = Some(it.next().context("--for needs a duration (e.g. 15m)")?.clone()),
            "--since" => a.since = Some(it.next().context("--since needs a duration (e.g. 1h)")?.clone()),
            s if s.starts_with("--for=") => a.duration = Some(s["--for=".len()..].into()),
            s if s.starts_with("--since=") => a.since = Some(s["--since=".len()..].into()),
            s if s.starts_with("--socket=") => a.socket = Some(s["--socket=".len()..].into()),
            s if s.starts_with("--config=") => a.config = Some(s["--config=".len()..].into()),
            s if s.starts_with("--") && s != "--help" && s != "--version" => bail!("unknown option {s}\n{USAGE}"),
            _ => a.words.push(w.clone()),
        }
    }
    Ok(a)
}

pub fn run(argv: &[String]) -> anyhow::Result<ExitCode> {
    let args = parse(argv)?;
    let words: Vec<&str> = args.words.iter().map(String::as_str).collect();
    let socket = args
        .socket
        .or_else(|| std::env::var_os("LEASH_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    let req = match words.as_slice() {
        [] | ["help"] | ["--help"] => {
            println!("{USAGE}");
            return Ok(ExitCode::SUCCESS);
        }
        ["--version"] | ["version"] => {
            println!("leash {} ({})", env!("CARGO_PKG_VERSION"), crate::BUILD_TARGET);
            return Ok(ExitCode::SUCCESS);
        }
        ["daemon"] => return daemon(args.config),
        ["check"] => return check(args.config, args.json),
        ["rpcd", rest @ ..] => return Ok(rpcd::run(rest, &socket)),
        ["status"] => Request::Status,
        ["devices"] => Request::Devices,
        ["destinations", d] => Request::Destinations { device: d.to_string() },
        ["explain", d, dst] => Request::Explain { device: d.to_string(), destination: dst.to_string() },
        ["consent", d, s] => Request::Consent { device: d.to_string(), selector: s.to_string(), duration: args.duration.clone() },
        ["alerts"] => Request::Alerts { since: args.since.clone() },
        ["revoke", d, s] => Request::Revoke { device: d.to_string(), selector: s.to_string() },
        ["quarantine", d] => Request::Quarantine { device: d.to_string() },
        ["release", d] => Request::Release { device: d.to_string() },
        ["reload"] => Request::Reload,
        ["lists"] => Request::Lists,
        _ => {
            eprintln!("leash: unknown command or wrong arguments: {}\n{USAGE}", words.join(" "));
            return Ok(ExitCode::from(2));
        }
    };
    // Options that only some commands take are not silently ignored.
    if args.duration.is_some() && !matches!(req, Request::Consent { .. }) || args.since.is_some() && !matches!(req, Request::Alerts { .. }) {
        eprintln!("leash: --for goes with consent, --since with alerts\n{USAGE}");
        return Ok(ExitCode::from(2));
    }
    let resp = client::call(&socket, &req)?;
    if !resp.ok {
        eprintln!("leash: {}", resp.error.unwrap_or_else(|| "the daemon refused".into()));
        return Ok(ExitCode::from(1));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&resp.data)?);
    } else {
        print!("{}", render(&req, &resp.data));
    }
    Ok(ExitCode::SUCCESS)
}

fn render(req: &Request, data: &Value) -> String {
    use Col::{Plain, Time};
    match req {
        Request::Devices => list(
            data,
            &[
                ("MAC", "mac", Plain),
                ("NAME", "name", Plain),
                ("VENDOR", "vendor", Plain),
                ("ADDRESSES", "addresses", Plain),
                ("PROFILE", "profile", Plain),
                ("STATE", "state", Plain),
                ("LAST SEEN", "last_seen", Time),
            ],
        ),
        Request::Destinations { .. } => list(
            data,
            &[
                ("NAMES", "names", Plain),
                ("ADDRESS", "address", Plain),
                ("COUNTRY", "country", Plain),
                ("ASN", "asn", Plain),
                ("FIRST SEEN", "first_seen", Time),
                ("LAST SEEN", "last_seen", Time),
                ("UP", "bytes_up", Plain),
                ("DOWN", "bytes_down", Plain),
                ("VERDICT", "verdict", Plain),
                ("RULE", "rule", Plain),
            ],
        ),
        Request::Alerts { .. } => alerts(data),
        Request::Status => status(data),
        Request::Lists => list(
            data,
            &[
                ("LIST", "name", Plain),
                ("SOURCE", "source", Plain),
                ("DOMAINS", "domains", Plain),
                ("NETS", "nets", Plain),
                ("SELECTORS", "selectors", Plain),
                ("BAD LINES", "bad_lines", Plain),
                ("LAST REFRESH", "last_refresh", Time),
                ("LAST ERROR", "last_error", Plain),
            ],
        ),
        _ => table::key_values(data),
    }
}

/// Recent alert lines: when, severity, and the line as syslog got it.
fn alerts(data: &Value) -> String {
    list(data, &[("TIME", "time", Col::Time), ("SEVERITY", "severity", Col::Plain), ("LINE", "line", Col::Plain)])
}

/// `status` for a person: the headline figures and the last alerts
/// (`--json` has every counter).
fn status(d: &Value) -> String {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let c = &d["counters"];
    let mut rows: Vec<Vec<String>> = vec![
        vec!["mode".into(), format!("{} (leash {}, config {})", table::cell(&d["mode"]), table::cell(&d["version"]), table::cell(&d["config"]))],
        vec!["uptime".into(), human_duration(n(&d["uptime"]))],
        vec!["devices".into(), format!("{} ({} quarantined, {} learning)", n(&d["devices"]), n(&d["quarantined"]), n(&d["learning"]))],
        vec!["flows judged".into(), n(&d["flows_judged"]).to_string()],
        vec!["DNS answers".into(), format!("{} ({} unsolicited)", n(&c["dns_answers"]), n(&c["dns_unsolicited"]))],
        vec!["events lost".into(), format!("{} ({} resyncs)", n(&d["events_lost"]), n(&d["resyncs"]))],
        vec!["rules in kernel".into(), format!("{} ({} blocks, {} quarantine elements)", n(&d["rules_in_kernel"]), n(&d["blocks_in_kernel"]), n(&d["quarantine_elements"]))],
        vec!["table rebuilds".into(), n(&c["table_rebuilds"]).to_string()],
    ];
    if n(&d["syslog_dropped"]) > 0 {
        rows.push(vec!["syslog dropped".into(), n(&d["syslog_dropped"]).to_string()]);
    }
    let mut out = String::new();
    for r in &rows {
        out.push_str(&format!("{:<16} {}\n", format!("{}:", r[0]), r[1]));
    }
    let recent = &d["recent_alerts"];
    if recent.as_array().is_some_and(|a| !a.is_empty()) {
        out.push_str("\nlast alerts:\n");
        out.push_str(&alerts(recent));
    } else {
        out.push_str("\nno alerts yet\n");
    }
    out
}

/// Seconds as a person reads them: `45s`, `12m 5s`, `3h 20m`, `2d 4h`.
fn human_duration(s: u64) -> String {
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, s / 60 % 60),
        _ => format!("{}d {}h", s / 86_400, s / 3600 % 24),
    }
}

#[derive(Clone, Copy)]
enum Col {
    Plain,
    /// Unix seconds, shown as a UTC date and time.
    Time,
}

/// A JSON array of objects as a table: (header, field, how to show it).
fn list(data: &Value, cols: &[(&str, &str, Col)]) -> String {
    let rows: Vec<Vec<String>> = data
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|item| {
            cols.iter()
                .map(|(_, field, col)| match col {
                    Col::Plain => table::cell(&item[*field]),
                    Col::Time => table::time(&item[*field]),
                })
                .collect()
        })
        .collect();
    let headers: Vec<&str> = cols.iter().map(|(h, _, _)| *h).collect();
    table::render(&headers, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reads_at_a_glance() {
        let d = serde_json::json!({
            "mode": "enforce", "version": "0.1.0", "config": "/etc/leash/leash.toml", "uptime": 7500,
            "devices": 4, "quarantined": 1, "learning": 2, "flows_judged": 99, "events_lost": 0, "resyncs": 1,
            "rules_in_kernel": 3, "blocks_in_kernel": 2, "quarantine_elements": 1,
            "counters": {"dns_answers": 50, "dns_unsolicited": 2, "table_rebuilds": 0},
            "recent_alerts": [{"time": 1_795_382_043u64, "severity": "warning", "verb": "QUARANTINE", "line": "QUARANTINE device=aa:bb:cc:dd:ee:ff"}],
        });
        let t = status(&d);
        assert!(t.contains("uptime:          2h 5m"), "{t}");
        assert!(t.contains("4 (1 quarantined, 2 learning)"), "{t}");
        assert!(t.contains("50 (2 unsolicited)"), "{t}");
        assert!(t.contains("2026-11-22 21:14:03  warning   QUARANTINE device=aa:bb:cc:dd:ee:ff"), "{t}");
        assert_eq!(human_duration(45), "45s");
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(run(&words(&["status", "--for", "1m", "--socket", "/nonexistent"])).unwrap(), ExitCode::from(2), "--for is consent's");
        assert!(parse(&words(&["consent", "cam", "x", "--for"])).is_err(), "--for needs a value");
        assert_eq!(human_duration(2 * 86_400 + 3 * 3600), "2d 3h");
    }
}

fn daemon(config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    crate::logging::init();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(crate::daemon::run(config))?;
    Ok(ExitCode::SUCCESS)
}

fn check(config: Option<PathBuf>, json: bool) -> anyhow::Result<ExitCode> {
    crate::logging::init();
    let policy = match crate::daemon::load_policy(config.as_deref()) {
        Ok(p) => p,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            eprintln!("leash: {} error(s); configuration not valid", errors.0.len());
            return Ok(ExitCode::from(1));
        }
    };
    let c = &policy.config;
    if json {
        let lists: serde_json::Map<String, Value> =
            policy.lists.iter().map(|(n, l)| (n.clone(), serde_json::json!({"entries": l.len(), "bad_lines": l.bad_lines}))).collect();
        let ct = c.daemon.conntrack_buffer.bytes(crate::daemon::mem_total());
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"config": c, "lists": lists, "conntrack_buffer": ct}))?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}: ok (mode {:?}, watching {})", c.source.display(), c.daemon.mode, c.daemon.lan.join(", "));
    let ram = crate::daemon::mem_total();
    let ct = c.daemon.conntrack_buffer.bytes(ram);
    match c.daemon.conntrack_buffer {
        crate::config::ConntrackBuffer::Auto => println!(
            "conntrack buffer: auto, {:.1} MiB for {} of RAM",
            ct as f64 / 1048576.0,
            ram.map_or("an unknown amount".to_string(), |r| format!("{} MiB", r >> 20))
        ),
        crate::config::ConntrackBuffer::Bytes(_) => println!("conntrack buffer: {:.1} MiB", ct as f64 / 1048576.0),
    }
    let rows: Vec<Vec<String>> = c
        .profiles
        .values()
        .map(|p| vec![p.name.clone(), p.unlisted.to_string(), p.denied.to_string(), p.deny.join(",")])
        .collect();
    print!("\n{}", table::render(&["PROFILE", "UNLISTED", "DENIED", "DENY LISTS"], &rows));
    let rows: Vec<Vec<String>> =
        policy.lists.iter().map(|(n, l)| vec![n.clone(), l.len().to_string(), l.bad_lines.to_string()]).collect();
    print!("\n{}", table::render(&["LIST", "ENTRIES", "BAD LINES"], &rows));
    let rows: Vec<Vec<String>> = c
        .devices
        .iter()
        .map(|d| {
            vec![
                d.mac.to_string(),
                d.name.clone().unwrap_or_else(|| "-".into()),
                d.profile.clone().unwrap_or_else(|| c.defaults.profile.clone()),
                d.consent.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(","),
            ]
        })
        .collect();
    print!("\n{}", table::render(&["DEVICE", "NAME", "PROFILE", "CONSENT"], &rows));
    Ok(ExitCode::SUCCESS)
}
