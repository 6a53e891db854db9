//! Persisted blocks (SPEC §6: "Blocks and quarantines are both persisted,
//! blocks with their remaining timeout"): an append-only journal beside
//! `state.json`, `blocks.journal`, one JSON line per change.
//!
//! Blocks come and go far more often than consents or quarantines, and a
//! router keeps its state on flash: rewriting a state file of thousands of
//! blocks on every decision would wear it out and cost milliseconds that a
//! block cannot wait. An appended line is one small `write`, done before the
//! element goes to the kernel, so a `kill -9` at any moment loses nothing
//! (the page cache outlives the process); `sync` (each housekeeping tick)
//! makes it survive a power cut too. The journal is rewritten whole
//! (compacted) at start and whenever it holds far more lines than blocks.
//!
//! The codec is pure; `Journal` is the thin file adapter.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::mac::Mac;
use crate::store::state::StateError;

pub const FILE_NAME: &str = "blocks.journal";

/// One persisted block: one device may not reach one address until `until`
/// (unix seconds), because of `rule`, given with these names (the first
/// `trusted` from the router's resolver).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockEntry {
    pub mac: Mac,
    pub addr: IpAddr,
    pub until: u64,
    pub rule: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub trusted: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Line {
    /// A block given or renewed.
    Add(BlockEntry),
    /// A block lifted.
    Remove { mac: Mac, addr: IpAddr },
}

impl Line {
    pub fn encode(&self, out: &mut Vec<u8>) {
        if serde_json::to_writer(&mut *out, self).is_ok() {
            out.push(b'\n');
        }
    }
}

/// The blocks a journal's bytes leave in force at `now`, and how many
/// lines could not be read (a torn last line after a power cut, garbage).
pub fn replay(bytes: &[u8], now: u64) -> (BTreeMap<(Mac, IpAddr), BlockEntry>, usize) {
    let mut live = BTreeMap::new();
    let mut bad = 0;
    for raw in bytes.split(|b| *b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)) {
        match serde_json::from_slice::<Line>(raw) {
            Ok(Line::Add(e)) => {
                live.insert((e.mac, e.addr), e);
            }
            Ok(Line::Remove { mac, addr }) => {
                live.remove(&(mac, addr));
            }
            Err(_) => bad += 1,
        }
    }
    live.retain(|_, e| e.until > now);
    (live, bad)
}

/// The journal file.
pub struct Journal {
    dir: PathBuf,
    file: Option<File>,
    /// Lines in the file now (for compaction).
    lines: usize,
    dirty: bool,
    pub appends: u64,
    pub compactions: u64,
}

impl Journal {
    pub fn new(dir: &Path) -> Journal {
        Journal { dir: dir.to_path_buf(), file: None, lines: 0, dirty: false, appends: 0, compactions: 0 }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Reads the journal: the blocks in force at `now` and the count of
    /// unreadable lines. A missing file is an empty journal.
    pub fn load(&mut self, now: u64) -> Result<(BTreeMap<(Mac, IpAddr), BlockEntry>, usize), StateError> {
        let path = self.path();
        match fs::read(&path) {
            Ok(b) => Ok(replay(&b, now)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((BTreeMap::new(), 0)),
            Err(source) => Err(StateError::Io { what: "read", path, source }),
        }
    }

    /// Appends `lines` with one write. Not synced: see the module doc.
    pub fn append(&mut self, lines: &[Line]) -> Result<(), StateError> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(lines.len() * 96);
        for l in lines {
            l.encode(&mut buf);
        }
        let path = self.path();
        if self.file.is_none() {
            fs::create_dir_all(&self.dir).map_err(io("create", &self.dir))?;
            self.file = Some(OpenOptions::new().create(true).append(true).open(&path).map_err(io("open", &path))?);
        }
        let f = self.file.as_mut().expect("opened above");
        if let Err(source) = f.write_all(&buf) {
            // Reopen next time: the descriptor may be what failed.
            self.file = None;
            return Err(StateError::Io { what: "append to", path, source });
        }
        self.lines += lines.len();
        self.dirty = true;
        self.appends += 1;
        Ok(())
    }

    /// Makes what was appended survive a power cut.
    pub fn sync(&mut self) -> Result<(), StateError> {
        if !self.dirty {
            return Ok(());
        }
        if let Some(f) = &self.file {
            f.sync_data().map_err(io("sync", &self.path()))?;
        }
        self.dirty = false;
        Ok(())
    }

    /// Whether the file holds so many more lines than live blocks that
    /// rewriting it is worth a write of its own.
    pub fn wants_compaction(&self, live: usize) -> bool {
        self.lines > 2 * live + 1024
    }

    /// Rewrites the journal as one `add` line per live block: temp file,
    /// fsync, rename, fsync of the directory (a torn tail is gone too).
    pub fn compact<'a>(&mut self, live: impl IntoIterator<Item = &'a BlockEntry>) -> Result<(), StateError> {
        fs::create_dir_all(&self.dir).map_err(io("create", &self.dir))?;
        let mut buf = Vec::new();
        let mut n = 0;
        for e in live {
            Line::Add(e.clone()).encode(&mut buf);
            n += 1;
        }
        let path = self.path();
        let tmp = self.dir.join(format!(".{FILE_NAME}.tmp"));
        let mut f = File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(&buf).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("sync", &tmp))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io("rename", &path))?;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        self.file = None;
        self.lines = n;
        self.dirty = false;
        self.compactions += 1;
        Ok(())
    }
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StateError + 'a {
    move |source| StateError::Io { what, path: path.to_path_buf(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: Mac = Mac([2, 0, 0, 0, 7, 2]);

    fn entry(addr: &str, until: u64) -> BlockEntry {
        BlockEntry { mac: M, addr: addr.parse().unwrap(), until, rule: "list:bad".into(), names: vec!["t.example.com".into()], trusted: 1 }
    }

    #[test]
    fn replays_adds_renewals_and_removes_and_drops_expired() {
        let mut b = Vec::new();
        Line::Add(entry("203.0.113.7", 100)).encode(&mut b);
        Line::Add(entry("203.0.113.8", 100)).encode(&mut b);
        Line::Add(entry("2001:db8::9", 50)).encode(&mut b);
        Line::Add(entry("203.0.113.7", 200)).encode(&mut b);
        Line::Remove { mac: M, addr: "203.0.113.8".parse().unwrap() }.encode(&mut b);
        let (live, bad) = replay(&b, 60);
        assert_eq!(bad, 0);
        assert_eq!(live.values().cloned().collect::<Vec<_>>(), [entry("203.0.113.7", 200)]);
    }

    #[test]
    fn a_torn_or_garbage_line_is_counted_not_fatal() {
        let mut b = Vec::new();
        Line::Add(entry("203.0.113.7", 100)).encode(&mut b);
        b.extend_from_slice(b"not json\n{\"add\":{\"mac\":\"02:00:00:00:07:02\",\"addr\":\"203.0");
        let (live, bad) = replay(&b, 0);
        assert_eq!((live.len(), bad), (1, 2));
        assert_eq!(replay(&[0xff, b'\n', 0], 0).1, 2);
    }

    #[test]
    fn appends_compacts_and_loads() {
        let dir = std::env::temp_dir().join(format!("leash-journal-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mut j = Journal::new(&dir);
        assert!(j.load(0).unwrap().0.is_empty(), "no file: empty");
        j.append(&[Line::Add(entry("203.0.113.7", 100)), Line::Add(entry("203.0.113.8", 100))]).unwrap();
        j.append(&[Line::Remove { mac: M, addr: "203.0.113.8".parse().unwrap() }]).unwrap();
        j.sync().unwrap();
        let (live, _) = j.load(0).unwrap();
        assert_eq!(live.len(), 1);
        assert!(!j.wants_compaction(1));
        j.compact(live.values()).unwrap();
        assert_eq!(fs::read_to_string(j.path()).unwrap().lines().count(), 1);
        j.append(&[Line::Add(entry("203.0.113.9", 100))]).unwrap();
        assert_eq!(j.load(0).unwrap().0.len(), 2, "appends after a compaction go to the new file");
        let _ = fs::remove_dir_all(&dir);
    }
}
