//! Persisted decisions (SPEC §1 `/etc/leash/state/`): consents granted at run
//! time, quarantines, and when each device was first seen (for learning).
//! The codec is pure; `Store` writes atomically, and only when the bytes
//! change, because routers keep this on flash.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::mac::Mac;
use crate::policy::selector::Selector;

pub const FILE_NAME: &str = "state.json";
const VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub version: u32,
    #[serde(default)]
    pub consents: BTreeMap<Mac, BTreeSet<Selector>>,
    #[serde(default)]
    pub quarantines: BTreeMap<Mac, Quarantine>,
    /// Unix seconds a device was first seen: drives `defaults.learn`, and
    /// says which MACs were announced (`DEVICE action=new`) already.
    #[serde(default)]
    pub first_seen: BTreeMap<Mac, u64>,
    /// Consents granted for a while (`consent --for`): unix seconds each
    /// one in `consents` expires. Absent from files of older versions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub consent_expiry: BTreeMap<Mac, BTreeMap<Selector, u64>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quarantine {
    pub since: u64,
    /// The rule that quarantined it (`manual`, `list:telemetry`, ...).
    pub rule: String,
    /// Addresses in the inbound-drop sets, so that release removes them all.
    #[serde(default)]
    pub addrs: BTreeSet<IpAddr>,
    /// The destination that earned it and the names it had then (the
    /// router's resolver's first, `names_trusted` of them), so that it is
    /// judged again when consents or the configuration change. None for
    /// a quarantine by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub names_trusted: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Devices remembered (for learning and for announcing new ones); beyond
/// this the oldest are dropped, and such a device would be announced again.
pub const MAX_FIRST_SEEN: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file {path} is corrupt: {source}")]
    Corrupt { path: PathBuf, #[source] source: serde_json::Error },
    #[error("state file {path} has version {found}, this leash reads {VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("cannot {what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, #[source] source: io::Error },
}

impl State {
    pub fn new() -> State {
        State { version: VERSION, ..State::default() }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    pub fn decode(path: &Path, bytes: &[u8]) -> Result<State, StateError> {
        let s: State = serde_json::from_slice(bytes).map_err(|source| StateError::Corrupt { path: path.into(), source })?;
        if s.version != VERSION {
            return Err(StateError::Version { path: path.into(), found: s.version });
        }
        Ok(s)
    }
}

/// The state file on disk.
pub struct Store {
    dir: PathBuf,
    last_written: Vec<u8>,
    pub writes: u64,
}

impl Store {
    pub fn new(dir: &Path) -> Store {
        Store { dir: dir.to_path_buf(), last_written: Vec::new(), writes: 0 }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Loads the state. A corrupt file is moved aside (never deleted, never
    /// fatal) and the error returned with an empty state for the caller to log.
    pub fn load(&mut self) -> (State, Option<StateError>) {
        let path = self.path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return (State::new(), None),
            Err(source) => return (State::new(), Some(StateError::Io { what: "read", path, source })),
        };
        match State::decode(&path, &bytes) {
            Ok(s) => {
                self.last_written = bytes;
                (s, None)
            }
            Err(e) => {
                let aside = path.with_extension(format!("json.corrupt-{}", now_secs()));
                let _ = fs::rename(&path, &aside);
                (State::new(), Some(e))
            }
        }
    }

    /// Writes when the encoded state differs from what is on disk:
    /// temp file, fsync, rename, fsync of the directory.
    pub fn save(&mut self, state: &State) -> Result<bool, StateError> {
        let bytes = state.encode();
        if bytes == self.last_written {
            return Ok(false);
        }
        fs::create_dir_all(&self.dir).map_err(io("create", &self.dir))?;
        let path = self.path();
        let tmp = self.dir.join(format!(".{FILE_NAME}.tmp"));
        let mut f = fs::File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(&bytes).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("sync", &tmp))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io("rename", &path))?;
        if let Ok(d) = fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        self.last_written = bytes;
        self.writes += 1;
        Ok(true)
    }
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StateError + 'a {
    move |source| StateError::Io { what, path: path.to_path_buf(), source }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("leash-state-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn sample() -> State {
        let mut s = State::new();
        let mac: Mac = "aa:bb:cc:dd:ee:ff".parse().unwrap();
        s.consents.entry(mac).or_default().insert("ring.com".parse().unwrap());
        s.consents.entry(mac).or_default().insert("203.0.113.0/24".parse().unwrap());
        s.quarantines.insert(
            mac,
            Quarantine { since: 5, rule: "list:telemetry".into(), addrs: ["192.168.1.23".parse().unwrap()].into(), dst: Some("203.0.113.7".parse().unwrap()), names: vec!["t.example.cn".into()], names_trusted: 1 },
        );
        s.first_seen.insert(mac, 4);
        s.consent_expiry.entry(mac).or_default().insert("ring.com".parse().unwrap(), 900);
        s
    }

    #[test]
    fn files_of_older_versions_still_load() {
        let old = br#"{"version":1,"consents":{"aa:bb:cc:dd:ee:ff":["ring.com"]},"quarantines":{},"first_seen":{}}"#;
        let s = State::decode(Path::new("x"), old).unwrap();
        assert!(s.consent_expiry.is_empty());
        assert_eq!(s.consents.len(), 1);
        // Without timed consents the file stays as older versions wrote it.
        assert!(!String::from_utf8(s.encode()).unwrap().contains("consent_expiry"));
    }

    #[test]
    fn round_trips() {
        let s = sample();
        let back = State::decode(Path::new("x"), &s.encode()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn rejects_corrupt_and_unknown() {
        assert!(matches!(State::decode(Path::new("x"), b"{\"version\":1,"), Err(StateError::Corrupt { .. })));
        assert!(matches!(State::decode(Path::new("x"), b"{\"version\":9}"), Err(StateError::Version { .. })));
        let bad_sel = br#"{"version":1,"consents":{"aa:bb:cc:dd:ee:ff":["not a selector!"]}}"#;
        assert!(State::decode(Path::new("x"), bad_sel).is_err());
    }

    #[test]
    fn writes_only_on_change_and_sets_corrupt_files_aside() {
        let dir = tmpdir("store");
        let mut st = Store::new(&dir);
        assert_eq!(st.load().0, State::new());
        assert!(st.save(&sample()).unwrap());
        assert!(!st.save(&sample()).unwrap(), "same bytes: no write");
        let mut again = Store::new(&dir);
        assert_eq!(again.load().0, sample());
        assert!(!again.save(&sample()).unwrap());
        fs::write(dir.join(FILE_NAME), b"garbage").unwrap();
        let (s, err) = Store::new(&dir).load();
        assert_eq!(s, State::new());
        assert!(err.is_some());
        let aside = fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).any(|e| e.file_name().to_string_lossy().contains("corrupt"));
        assert!(aside);
        let _ = fs::remove_dir_all(&dir);
    }
}
