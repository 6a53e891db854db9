//! Lost conntrack events (SPEC §2 step 1, issue #3 point 2): when the
//! kernel overruns leash's receive buffer, leash counts it and judges the
//! whole table from a dump, so no flow goes unjudged.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use leash_lab::{ip4, mac};

#[test]
fn an_overrun_is_counted_and_followed_by_a_resync() {
    const FLOWS: usize = 20_000;
    let mut lab = lab("overrun", 1);
    // A buffer far too small for the burst: the kernel must drop events.
    lab.start_leash(&config("enforce", "block", r#"conntrack_buffer = "64KiB""#, ""));
    let r = lab.router();
    r.exec(&["ip", "neigh", "replace", &ip4(1).to_string(), "lladdr", &mac(1), "dev", "br-lan", "nud", "permanent"]);
    lab.wait_until(Duration::from_secs(5), "device 1 known", || lab.device_report(&mac(1)).is_some());

    // Allowed destinations only (198.51.100.0/24 is not denied), so that
    // judging them has no effects to wait for.
    let file = lab.dir.join("burst.txt");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        for i in 0..FLOWS {
            let dst = format!("198.51.100.{}", 1 + i % 250);
            writeln!(f, "-I -s {} -d {dst} -p tcp --sport {} --dport 443 --state ESTABLISHED -t 600", ip4(1), 1024 + i / 250).unwrap();
        }
    }
    // Frozen while the burst goes in, so the overrun does not depend on how
    // fast leash drains: a 128 KiB buffer holds well under a thousand events.
    // (Before, a daemon fast enough kept up with the burst and the test failed.)
    let frozen = Frozen::new(lab.daemon_pid().expect("daemon running"));
    let out = r.try_exec(&["conntrack", "-R", file.to_str().unwrap()]);
    drop(frozen);
    assert!(out.status.success(), "conntrack -R: {}", String::from_utf8_lossy(&out.stderr));

    let counters = || lab.leash_json(&["status"])["counters"].clone();
    let judged_all = leash_lab::wait::poll_until(Duration::from_secs(30), || {
        let c = counters();
        c["resyncs"].as_u64().unwrap_or(0) >= 1 && c["flows_judged"].as_u64().unwrap_or(0) >= FLOWS as u64
    });
    let c = counters();
    let in_table = r.try_exec(&["conntrack", "-C"]);
    assert!(
        judged_all,
        "every flow judged, through events or a resync dump: {c}\nentries in the table: {}\n{}",
        String::from_utf8_lossy(&in_table.stdout),
        lab.diagnostics()
    );
    assert!(c["events_lost"].as_u64().unwrap_or(0) >= 1, "{c}");
    assert!(c["ct_new_events"].as_u64().unwrap_or(0) < FLOWS as u64, "the small buffer lost events: {c}");
    // Every flow reached leash as an event or in a resync dump. (A resync
    // may begin while `conntrack -R` is still inserting, so no one dump need
    // hold the whole burst; the flows inserted after it come as events.)
    let seen = c["ct_new_events"].as_u64().unwrap_or(0) + c["ct_dumped"].as_u64().unwrap_or(0);
    assert!(seen >= FLOWS as u64, "events and resync dumps together saw every flow: {c}");
}

/// SIGSTOP on creation, SIGCONT on drop (a failing assertion included), so a
/// test never leaves the daemon stopped for its clean-up to hang on.
struct Frozen(nix::unistd::Pid);

impl Frozen {
    fn new(pid: u32) -> Frozen {
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGCONT);
    }
}
