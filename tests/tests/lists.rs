//! Lists by URL (SPEC §3 `urls`/`refresh`, §4 `leash lists`): a list served
//! by an HTTP server in the WAN is fetched by the daemon (with curl, the
//! router's client on Debian), enforced, refreshed when it changes, and kept
//! when a download fails, is too large or is garbage; its cached copy
//! serves a restart with the server down. A name on such a list is blocked
//! at DNS time (UCI configuration).

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use common::*;
use leash_lab::http::HttpServer;
use leash_lab::lab::ROUTER_V4;
use leash_lab::{ip, mac, Lab, QType, Zone, PRI_WARNING};
use serde_json::Value;

/// A cloud address of the lab's WAN (`lab::CLOUD_V4`).
const SERVER: &str = "198.51.100.20:8080";
/// Refresh interval of the test's list: failures back off to it too.
const REFRESH: &str = "2s";
/// Several refreshes and a download fit in it.
const DEADLINE: Duration = Duration::from_secs(20);

/// Profile iot (everyone's) blocks what the subscribed list `sub` holds.
fn config(url: &str) -> String {
    format!(
        r#"[daemon]
mode = "enforce"
lan = ["br-lan"]

[defaults]
profile = "iot"

[profile.iot]
unlisted = "allow"
denied = "block"
deny = ["sub"]

[list.sub]
urls = ["{url}"]
refresh = "{REFRESH}"
"#
    )
}

struct Served {
    dir: PathBuf,
    server: HttpServer,
}

impl Served {
    fn start(lab: &Lab) -> Served {
        let dir = lab.dir.join("www");
        std::fs::create_dir_all(&dir).expect("www dir");
        let addr: SocketAddr = SERVER.parse().expect("server address");
        let server = HttpServer::start(&lab.wan().name, addr, &dir);
        Served { dir, server }
    }

    fn put(&self, body: &[u8]) {
        // Renamed into place: the server never sends half a file.
        let tmp = self.dir.join(".sub.txt");
        std::fs::write(&tmp, body).expect("write list");
        std::fs::rename(&tmp, self.dir.join("sub.txt")).expect("rename list");
    }

    fn remove(&self) {
        let _ = std::fs::remove_file(self.dir.join("sub.txt"));
    }
}

/// `leash lists --json`'s entry for `sub`.
fn sub(lab: &Lab) -> Value {
    let all = lab.leash_json(&["lists"]);
    all.as_array().and_then(|a| a.iter().find(|l| l["name"] == "sub").cloned()).unwrap_or(Value::Null)
}

fn verdict(lab: &Lab, dst: &str) -> String {
    lab.leash_json(&["explain", &mac(1), dst])["verdict"].as_str().unwrap_or_default().to_string()
}

fn cache(lab: &Lab) -> PathBuf {
    lab.state_dir().join("lists").join("sub")
}

fn mtime(lab: &Lab) -> Option<SystemTime> {
    std::fs::metadata(cache(lab)).and_then(|m| m.modified()).ok()
}

/// Waits until `sub`'s last error contains `what`, and says what it was.
fn wait_error(lab: &Lab, what: &str) -> String {
    let mut last = Value::Null;
    lab.wait_until(DEADLINE, &format!("leash lists shows an error with {what:?}"), || {
        last = sub(lab);
        last["last_error"].as_str().is_some_and(|e| e.contains(what))
    });
    last["last_error"].as_str().unwrap_or_default().to_string()
}

/// Waits until the daemon has tried the URL again twice (`last_attempt`
/// moved on by two refresh intervals), so that what holds after it has
/// seen refreshes.
fn wait_attempts(lab: &Lab) {
    let first = sub(lab)["last_attempt"].as_u64().unwrap_or(0);
    lab.wait_until(DEADLINE, "two more download attempts", || sub(lab)["last_attempt"].as_u64().unwrap_or(0) >= first + 2 * 2);
}

#[test]
fn list_by_url_is_fetched_refreshed_and_kept_through_bad_downloads() {
    let mut lab = lab("lists-url", 1);
    let _https = lab.wan_tcp_server(HTTPS);
    let served = Served::start(&lab);
    served.put(format!("# subscribed\n{BAD4}\n").as_bytes());
    lab.start_leash(&config(&served.server.url("sub.txt")));
    known_device(&lab, 1);

    // Fetched and enforced.
    lab.wait_until(DEADLINE, "the list is fetched", || sub(&lab)["last_refresh"].is_u64());
    let l = sub(&lab);
    assert_eq!((l["nets"].as_u64(), l["domains"].as_u64(), l["bad_lines"].as_u64()), (Some(1), Some(0), Some(0)), "{l}");
    assert_eq!(l["source"], served.server.url("sub.txt"), "{l}");
    assert!(l["last_error"].is_null(), "{l}");
    trigger(&lab, 1, BAD4, "BLOCK", PRI_WARNING, ("list:sub", "iot"));
    lab.wait_until(REACT, "block_v4 holds the listed address", || lab.set_has("block_v4", &block_elem(1, BAD4)));
    assert_eq!(std::fs::read_to_string(cache(&lab)).unwrap_or_default(), format!("# subscribed\n{BAD4}\n"), "cached copy");
    let text = lab.leash_ok(&["lists"]);
    assert!(text.starts_with("LIST") && text.contains("LAST REFRESH") && text.lines().nth(1).is_some_and(|l| l.starts_with("sub ") && l.contains("http://198.51.100.20:8080/sub.txt")), "{text}");

    // Unchanged on the server: refreshed, but the cached copy is not rewritten.
    let before = mtime(&lab);
    wait_attempts(&lab);
    assert_eq!(mtime(&lab), before, "same bytes: the cached copy is left alone (flash wear)");

    // Changed: the new entry is enforced, the old one no longer, and its block goes.
    served.put(format!("{OK4}\n").as_bytes());
    lab.wait_until(DEADLINE, "the new entry is enforced", || verdict(&lab, OK4) == "block");
    assert_eq!(verdict(&lab, BAD4), "allow");
    lab.wait_until(REACT, "the old entry's block is lifted", || !lab.set_has("block_v4", &block_elem(1, BAD4)));
    trigger(&lab, 1, OK4, "BLOCK", PRI_WARNING, ("list:sub", "iot"));
    assert_eq!(std::fs::read_to_string(cache(&lab)).unwrap_or_default(), format!("{OK4}\n"));

    // A failed download (404) keeps the last good copy and says why.
    served.remove();
    let e = wait_error(&lab, "404");
    assert!(e.contains(&served.server.url("sub.txt")), "the error names the URL: {e}");
    assert_eq!(verdict(&lab, OK4), "block", "the last good copy stays in force");
    assert_eq!(sub(&lab)["nets"], 1);

    // Garbage (an HTML page) is refused.
    served.put(b"<html>\n<head><title>Captive portal</title></head>\n<body>please log in</body>\n</html>\n");
    wait_error(&lab, "no usable entries");
    assert_eq!(verdict(&lab, OK4), "block");
    // So is a file of mostly bad lines.
    served.put(format!("{BAD4}\nnot a list line\nnor this one\n").as_bytes());
    wait_error(&lab, "mostly bad lines");
    assert_eq!((verdict(&lab, OK4).as_str(), verdict(&lab, BAD4).as_str()), ("block", "allow"));

    // Oversized (beyond 32 MiB): refused, whatever it holds.
    let line = format!("{BAD4}\n");
    served.put(line.repeat((33 << 20) / line.len()).as_bytes());
    wait_error(&lab, "larger than");
    assert_eq!((verdict(&lab, OK4).as_str(), verdict(&lab, BAD4).as_str()), ("block", "allow"));
    assert_eq!(std::fs::read_to_string(cache(&lab)).unwrap_or_default(), format!("{OK4}\n"), "the cache holds the last good copy");
    served.remove();

    // Good again: the error clears.
    served.put(format!("{OK4}\n").as_bytes());
    lab.wait_until(DEADLINE, "a good download clears the error", || sub(&lab)["last_error"].is_null());

    // Server down, then a restart: the cached copy is in force from the start.
    let mut served = served;
    served.server.stop();
    wait_error(&lab, "sub.txt");
    lab.restart_leash();
    known_device(&lab, 1);
    assert_eq!(verdict(&lab, OK4), "block", "the cached copy is used at start");
    let l = sub(&lab);
    assert_eq!(l["nets"], 1, "{l}");
    wait_error(&lab, "sub.txt");
    let json = lab.leash_json(&["lists"]);
    assert!(json.as_array().is_some_and(|a| a.len() == 1), "{json}");
}

/// A name on a subscribed list (UCI `list urls`, `option refresh`) is
/// blocked when its answer crosses the router, before any packet to it.
#[test]
fn subscribed_name_blocked_at_dns_time_with_uci() {
    let mut lab = lab("lists-dns", 1);
    let served = Served::start(&lab);
    served.put(b"# adblock and hosts forms\n||tracking.example.com^\n0.0.0.0 ads.example.net\n");
    lab.start_dns(&Zone::new().address("tracking.example.com", BAD4).address("ok.example.org", OK4));
    let uci = format!(
        "config daemon\n\toption mode 'enforce'\n\tlist lan 'br-lan'\n\nconfig defaults\n\toption profile 'iot'\n\n\
         config profile 'iot'\n\toption unlisted 'allow'\n\toption denied 'block'\n\tlist deny 'sub'\n\n\
         config list 'sub'\n\tlist urls '{}'\n\toption refresh '{REFRESH}'\n",
        served.server.url("sub.txt")
    );
    std::fs::write(lab.dir.join("dhcp.leases"), "").expect("leases");
    lab.start_leash_uci(&uci);
    known_device(&lab, 1);
    lab.wait_until(DEADLINE, "the list is fetched", || sub(&lab)["domains"] == 2);
    assert_eq!(lab.resolve(1, ROUTER_V4, "tracking.example.com", QType::A), [ip(BAD4)]);
    lab.wait_until(REACT, "block_v4 holds the name's address right after the answer", || lab.set_has("block_v4", &block_elem(1, BAD4)));
    assert_eq!(lab.resolve(1, ROUTER_V4, "ok.example.org", QType::A), [ip(OK4)]);
    assert!(!lab.set_has("block_v4", &block_elem(1, OK4)), "an unlisted name is not blocked\n{}", lab.diagnostics());
    assert_eq!(lab.leash_json(&["explain", &mac(1), "x.tracking.example.com"])["rule"], "list:sub");
}

#[test]
fn an_unreachable_list_without_a_cached_copy_starts_empty_and_says_why() {
    let mut lab = lab("lists-nourl", 1);
    // Nothing listens on this port of the WAN: every download fails.
    lab.start_leash(&config("http://198.51.100.20:8099/none.txt"));
    known_device(&lab, 1);
    let e = wait_error(&lab, "none.txt");
    let l = sub(&lab);
    assert_eq!((l["entries"].as_u64(), l["last_refresh"].is_null()), (Some(0), true), "{l}; {e}");
    assert_eq!(verdict(&lab, BAD4), "allow");
}

/// Seconds a decision has to reach the kernel.
const REACT: Duration = leash_lab::lab::REACT_DEADLINE;
