//! When subscribed lists (`[list.NAME] urls`) are fetched, and whether a
//! download is worth using: pure decisions, tested with fake time. The
//! fetching itself is `daemon::fetch`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::policy::lists::ListContent;

/// The first retry after a failed download; each further failure doubles
/// it, up to the list's refresh interval.
pub const FIRST_BACKOFF: u64 = 60;

/// Why a download is not used (the last good copy stays in force).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Garbage {
    #[error("no usable entries ({bad_lines} lines that are not domains, hosts lines, adblock rules or addresses)")]
    Empty { bad_lines: usize },
    #[error("mostly bad lines: {bad_lines} bad against {entries} entries (first bad line {line}: {text:?})")]
    MostlyBad { entries: usize, bad_lines: usize, line: usize, text: String },
}

/// A download with nothing usable, or with more bad lines than entries, is
/// an error page or the wrong file rather than a list: using it would
/// silently drop the list's protection.
pub fn check_download(c: &ListContent) -> Result<(), Garbage> {
    let entries = c.domains.len() + c.nets.len();
    if entries == 0 {
        return Err(Garbage::Empty { bad_lines: c.bad_lines });
    }
    if c.bad_lines > entries {
        let (line, text) = c.first_bad.clone().unwrap_or_default();
        return Err(Garbage::MostlyBad { entries, bad_lines: c.bad_lines, line, text });
    }
    Ok(())
}

/// What `leash lists` shows of a subscribed list's refreshes. Times are
/// Unix seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RefreshStatus {
    /// The last download that was used.
    pub last_refresh: Option<u64>,
    pub last_attempt: Option<u64>,
    /// Why the last attempt failed; cleared by a success.
    pub last_error: Option<String>,
    pub next_refresh: u64,
    /// Failed attempts since the last success.
    pub failures: u32,
}

#[derive(Debug, Clone)]
struct Entry {
    urls: Vec<String>,
    every: u64,
    running: bool,
    status: RefreshStatus,
}

/// Which subscribed lists are due; one download per list at a time.
#[derive(Debug, Default)]
pub struct Schedule {
    lists: BTreeMap<String, Entry>,
}

impl Schedule {
    /// Follows the configuration: new lists (or lists whose URLs changed)
    /// are due at once, removed ones are forgotten, the others keep their
    /// times (a shorter interval takes effect now).
    pub fn sync<'a>(&mut self, subscribed: impl IntoIterator<Item = (&'a str, &'a [String], Duration)>, now: u64) {
        let mut kept = BTreeMap::new();
        for (name, urls, every) in subscribed {
            let every = every.as_secs().max(1);
            let entry = match self.lists.remove(name) {
                Some(mut e) if e.urls == urls => {
                    e.status.next_refresh = e.status.next_refresh.min(now.saturating_add(every));
                    e.every = every;
                    e
                }
                // A fetch still running for the old URLs finishes into
                // `done`, which the new entry ignores unless it is running.
                old => Entry {
                    urls: urls.to_vec(),
                    every,
                    running: old.is_some_and(|e| e.running),
                    status: RefreshStatus { next_refresh: now, ..RefreshStatus::default() },
                },
            };
            kept.insert(name.to_string(), entry);
        }
        self.lists = kept;
    }

    /// The lists due at `now`, at most `max_running` downloads at once;
    /// they count as running until `done`.
    pub fn due(&mut self, now: u64, max_running: usize) -> Vec<String> {
        let mut running = self.lists.values().filter(|e| e.running).count();
        let mut out = Vec::new();
        for (name, e) in &mut self.lists {
            if running >= max_running {
                break;
            }
            if !e.running && e.status.next_refresh <= now {
                e.running = true;
                running += 1;
                out.push(name.clone());
            }
        }
        out
    }

    /// A download finished: the next one after the interval, or after a
    /// backoff that doubles from `FIRST_BACKOFF` up to the interval.
    pub fn done(&mut self, name: &str, result: Result<(), String>, now: u64) {
        let Some(e) = self.lists.get_mut(name) else { return };
        e.running = false;
        let s = &mut e.status;
        s.last_attempt = Some(now);
        match result {
            Ok(()) => {
                s.last_refresh = Some(now);
                s.last_error = None;
                s.failures = 0;
                s.next_refresh = now.saturating_add(e.every);
            }
            Err(why) => {
                s.last_error = Some(why);
                s.failures = s.failures.saturating_add(1);
                let backoff = FIRST_BACKOFF.checked_shl(s.failures - 1).unwrap_or(u64::MAX).min(e.every);
                s.next_refresh = now.saturating_add(backoff);
            }
        }
    }

    /// A download finished for a configuration reloaded meanwhile: not a
    /// result of the list as it is now, which stays due.
    pub fn stale(&mut self, name: &str) {
        if let Some(e) = self.lists.get_mut(name) {
            e.running = false;
        }
    }

    /// Whether a download of `name` is under way.
    pub fn running(&self, name: &str) -> bool {
        self.lists.get(name).is_some_and(|e| e.running)
    }

    pub fn status(&self, name: &str) -> Option<&RefreshStatus> {
        self.lists.get(name).map(|e| &e.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::lists::parse_list;

    fn urls(u: &[&str]) -> Vec<String> {
        u.iter().map(|s| s.to_string()).collect()
    }

    const H: Duration = Duration::from_secs(3600);

    #[test]
    fn new_lists_are_due_at_once_then_every_interval() {
        let a = urls(&["https://a.example/l"]);
        let mut s = Schedule::default();
        s.sync([("a", a.as_slice(), H)], 1000);
        assert_eq!(s.due(1000, 4), ["a"]);
        assert!(s.running("a"));
        assert!(s.due(1000, 4).is_empty(), "one download per list at a time");
        s.done("a", Ok(()), 1010);
        let st = s.status("a").cloned().unwrap_or_default();
        assert_eq!((st.last_refresh, st.last_attempt, st.next_refresh, st.failures), (Some(1010), Some(1010), 4610, 0));
        assert!(s.due(4609, 4).is_empty());
        assert_eq!(s.due(4610, 4), ["a"]);
    }

    #[test]
    fn failures_back_off_doubling_up_to_the_interval() {
        let a = urls(&["https://a.example/l"]);
        let mut s = Schedule::default();
        s.sync([("a", a.as_slice(), Duration::from_secs(300))], 0);
        let mut now = 0;
        let mut waits = Vec::new();
        for _ in 0..5 {
            assert_eq!(s.due(now, 1), ["a"]);
            s.done("a", Err("404".into()), now);
            let next = s.status("a").map_or(0, |x| x.next_refresh);
            waits.push(next - now);
            now = next;
        }
        assert_eq!(waits, [60, 120, 240, 300, 300]);
        assert_eq!(s.status("a").and_then(|x| x.last_error.clone()).as_deref(), Some("404"));
        assert_eq!(s.due(now, 1), ["a"]);
        s.done("a", Ok(()), now);
        let st = s.status("a").cloned().unwrap_or_default();
        assert_eq!((st.last_error, st.failures, st.next_refresh), (None, 0, now + 300));
        // A short test interval caps the backoff too.
        let mut s = Schedule::default();
        s.sync([("a", a.as_slice(), Duration::from_secs(2))], 0);
        s.due(0, 1);
        s.done("a", Err("x".into()), 5);
        assert_eq!(s.status("a").map(|x| x.next_refresh), Some(7));
    }

    #[test]
    fn bounded_downloads_at_once() {
        let u = urls(&["https://a.example/l"]);
        let mut s = Schedule::default();
        s.sync([("a", u.as_slice(), H), ("b", u.as_slice(), H), ("c", u.as_slice(), H)], 0);
        assert_eq!(s.due(0, 2), ["a", "b"]);
        assert!(s.due(0, 2).is_empty());
        s.done("a", Ok(()), 1);
        assert_eq!(s.due(1, 2), ["c"]);
        s.done("nonesuch", Ok(()), 1);
    }

    #[test]
    fn sync_follows_the_configuration() {
        let a = urls(&["https://a.example/l"]);
        let b = urls(&["https://b.example/l"]);
        let mut s = Schedule::default();
        s.sync([("a", a.as_slice(), H), ("x", a.as_slice(), H)], 0);
        s.due(0, 4);
        s.done("a", Ok(()), 0);
        s.done("x", Ok(()), 0);
        // Unchanged: keeps its time; a shorter interval applies now.
        s.sync([("a", a.as_slice(), H), ("x", a.as_slice(), Duration::from_secs(10))], 5);
        assert_eq!(s.status("a").map(|x| (x.next_refresh, x.last_refresh)), Some((3600, Some(0))));
        assert_eq!(s.status("x").map(|x| x.next_refresh), Some(15));
        // New URLs: due at once, history gone; removed lists forgotten.
        s.sync([("a", b.as_slice(), H)], 6);
        assert_eq!(s.status("a").map(|x| (x.next_refresh, x.last_refresh)), Some((6, None)));
        assert!(s.status("x").is_none());
        // A download running across a reload stays the only one.
        s.due(6, 4);
        s.sync([("a", a.as_slice(), H)], 7);
        assert!(s.running("a"));
        assert!(s.due(7, 4).is_empty());
        s.stale("a");
        assert_eq!(s.due(8, 4), ["a"], "the new URLs are fetched next");
    }

    #[test]
    fn garbage_downloads() {
        assert_eq!(check_download(&parse_list("a.example\n192.0.2.0/24\nnot a list line\n")), Ok(()));
        assert_eq!(check_download(&parse_list("")), Err(Garbage::Empty { bad_lines: 0 }));
        assert_eq!(check_download(&parse_list("# only comments\n")), Err(Garbage::Empty { bad_lines: 0 }));
        assert!(matches!(check_download(&parse_list("<html>\n<body>404 Not Found</body>\n</html>\n")), Err(Garbage::Empty { bad_lines: 3 })));
        let page = "<html><head>\n<title>Login</title>\nlogin.example\n<p>please sign in</p>\n</html>\n";
        assert!(matches!(check_download(&parse_list(page)), Err(Garbage::MostlyBad { entries: 1, bad_lines: 4, line: 1, .. })));
        let junk: Vec<u8> = (0..=255u8).cycle().take(64 * 1024).collect();
        assert!(check_download(&parse_list(&String::from_utf8_lossy(&junk))).is_err());
    }
}
