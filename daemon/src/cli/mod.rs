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
  status                              mode, uptime, devices, flows, events lost, rules
  devices                             devices seen and configured
  destinations DEVICE                 what a device talked to: names, country, AS, bytes
  explain DEVICE DESTINATION          the verdict and the rule that gives it
  consent DEVICE SELECTOR             grant consent (persisted)
  revoke DEVICE SELECTOR              withdraw a granted consent
  quarantine DEVICE                   cut a device off the internet (persisted)
  release DEVICE                      end a quarantine
  reload                              re-read the configuration (as SIGHUP)
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
}

fn parse(args: &[String]) -> anyhow::Result<Args> {
    let mut a = Args { words: Vec::new(), json: false, socket: None, config: None };
    let mut it = args.iter();
    while let Some(w) = it.next() {
        match w.as_str() {
            "--json" => a.json = true,
            "--socket" => a.socket = Some(it.next().context("--socket needs a path")?.into()),
            "--config" | "-c" => a.config = Some(it.next().context("--config needs a path")?.into()),
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
        ["consent", d, s] => Request::Consent { device: d.to_string(), selector: s.to_string() },
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
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"config": c, "lists": lists}))?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}: ok (mode {:?}, watching {})", c.source.display(), c.daemon.mode, c.daemon.lan.join(", "));
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
