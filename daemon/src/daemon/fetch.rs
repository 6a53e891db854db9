//! Downloads of subscribed lists (`[list.NAME] urls`) with the router's own
//! client — uclient-fetch, else curl, else wget, found on PATH at start and
//! on reload — so that leash carries no TLS stack. Each download runs on a
//! thread of its own; the event loop only starts it and later takes its
//! `Outcome`.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::ListDef;
use crate::policy::lists::{self, ListContent, LoadedList};
use crate::policy::refresh::{check_download, Garbage};

/// Larger downloads are refused: the biggest popular blocklists are a few
/// MiB, and the list must fit a router's RAM once parsed.
pub const MAX_DOWNLOAD: u64 = 32 << 20;
/// A download that takes longer is killed.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(120);
/// Downloads running at once.
pub const MAX_RUNNING: usize = 2;
/// How often a running client is checked (exit, size, timeout).
const POLL: Duration = Duration::from_millis(50);
/// The client's complaint kept for the error message.
const MAX_STDERR: usize = 300;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no download client on PATH (uclient-fetch, curl or wget)")]
    NoClient,
    #[error("{url}: starting {client}: {source}")]
    Spawn { url: String, client: &'static str, #[source] source: std::io::Error },
    #[error("{url}: {client} failed ({status}){}", if stderr.is_empty() { String::new() } else { format!(": {stderr}") })]
    Client { url: String, client: &'static str, status: String, stderr: String },
    #[error("{url}: larger than {max} bytes, refused")]
    TooLarge { url: String, max: u64 },
    #[error("{url}: no answer within {}s", .after.as_secs())]
    Timeout { url: String, after: Duration },
    #[error("{url}: {source}")]
    Garbage { url: String, #[source] source: Garbage },
    #[error("{what} {}: {source}", path.display())]
    Io { what: &'static str, path: PathBuf, #[source] source: std::io::Error },
}

/// Which client fetches, found on PATH once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Client {
    UclientFetch(PathBuf),
    Curl(PathBuf),
    Wget(PathBuf),
}

impl Client {
    pub fn find() -> Option<Client> {
        let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
        let find = |name: &str| std::env::split_paths(&path).map(|d| d.join(name)).find(|p| is_executable(p));
        find("uclient-fetch").map(Client::UclientFetch).or_else(|| find("curl").map(Client::Curl)).or_else(|| find("wget").map(Client::Wget))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Client::UclientFetch(_) => "uclient-fetch",
            Client::Curl(_) => "curl",
            Client::Wget(_) => "wget",
        }
    }

    /// The command line; the URL was validated (http/https, no whitespace),
    /// so it cannot read as an option.
    fn command(&self, url: &str, out: &Path) -> Command {
        let timeout: OsString = FETCH_TIMEOUT.as_secs().to_string().into();
        let (prog, args): (&Path, Vec<OsString>) = match self {
            // Each client's own timeout too, so that one outliving the daemon
            // (a stop mid-download) still ends.
            Client::UclientFetch(p) => (p, vec!["-q".into(), "-T".into(), timeout.clone(), "-O".into(), out.into(), url.into()]),
            Client::Curl(p) => (
                p,
                vec![
                    "-fsSL".into(),
                    "--max-time".into(),
                    timeout.clone(),
                    "--proto".into(),
                    "=http,https".into(),
                    "--proto-redir".into(),
                    "=http,https".into(),
                    "--max-filesize".into(),
                    MAX_DOWNLOAD.to_string().into(),
                    "-o".into(),
                    out.into(),
                    url.into(),
                ],
            ),
            Client::Wget(p) => (p, vec!["-q".into(), "-T".into(), timeout, "-O".into(), out.into(), url.into()]),
        };
        let mut c = Command::new(prog);
        c.args(args);
        c
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// One list's refresh, as the loop hands it to a thread.
#[derive(Debug, Clone)]
pub struct Job {
    pub def: ListDef,
    /// `state_dir/lists/NAME`.
    pub cache: PathBuf,
    /// Downloads land here first: RAM (`/tmp`) on OpenWrt, not flash.
    pub tmp_dir: PathBuf,
    pub client: Option<Client>,
}

/// A used download: the list rebuilt from its files, selectors and URLs.
#[derive(Debug)]
pub struct Fetched {
    pub list: LoadedList,
    /// Whether the cached copy was rewritten (its bytes differed).
    pub changed: bool,
}

#[derive(Debug)]
pub struct Outcome {
    /// The definition fetched for: a reload meanwhile makes it stale.
    pub def: ListDef,
    pub result: Result<Fetched, FetchError>,
}

/// Runs `job` on a thread of its own; `done` gets the outcome.
pub fn spawn(job: Job, done: tokio::sync::mpsc::UnboundedSender<Outcome>) {
    let name = format!("fetch-{}", job.def.name);
    let def = job.def.clone();
    let spawned = std::thread::Builder::new().name(name).spawn({
        let done = done.clone();
        move || {
            let result = refresh(&job);
            let _ = done.send(Outcome { def: job.def, result });
        }
    });
    if let Err(e) = spawned {
        let path = PathBuf::from("thread");
        let _ = done.send(Outcome { def, result: Err(FetchError::Io { what: "starting a download", path, source: e }) });
    }
}

/// Downloads every URL, checks each, and only when all are good rebuilds
/// the list and keeps the new copy: never half a refresh.
fn refresh(job: &Job) -> Result<Fetched, FetchError> {
    let client = job.client.as_ref().ok_or(FetchError::NoClient)?;
    let parts: Vec<PathBuf> =
        (0..job.def.urls.len()).map(|i| job.tmp_dir.join(format!("leash-list-{}.{}.{i}", job.def.name, std::process::id()))).collect();
    let result = (|| {
        let mut contents = Vec::with_capacity(job.def.files.len() + parts.len());
        for path in &job.def.files {
            contents.push(
                lists::load_file(path).map_err(|source| FetchError::Io { what: "reading list file", path: path.clone(), source })?,
            );
        }
        for (url, part) in job.def.urls.iter().zip(&parts) {
            download(client, url, part)?;
            let c: ListContent =
                lists::load_file(part).map_err(|source| FetchError::Io { what: "reading download", path: part.clone(), source })?;
            check_download(&c).map_err(|source| FetchError::Garbage { url: url.clone(), source })?;
            contents.push(c);
        }
        let changed = keep_copy(&parts, &job.cache)?;
        Ok(Fetched { list: LoadedList::build(&job.def, contents), changed })
    })();
    for p in &parts {
        let _ = std::fs::remove_file(p);
    }
    result
}

/// One URL into `out`, killed beyond `MAX_DOWNLOAD` bytes or
/// `FETCH_TIMEOUT` (uclient-fetch and wget have no size limit of their own).
fn download(client: &Client, url: &str, out: &Path) -> Result<(), FetchError> {
    let _ = std::fs::remove_file(out);
    let err_path = out.with_extension("err");
    let err_file = File::create(&err_path).map_err(|source| FetchError::Io { what: "creating", path: err_path.clone(), source })?;
    let mut child = client
        .command(url, out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err_file)
        .spawn()
        .map_err(|source| FetchError::Spawn { url: url.to_string(), client: client.name(), source })?;
    let began = Instant::now();
    let size = || std::fs::metadata(out).map_or(0, |m| m.len());
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) => {}
            Err(e) => break Err(FetchError::Io { what: "waiting for", path: client.name().into(), source: e }),
        }
        if size() > MAX_DOWNLOAD {
            break Err(FetchError::TooLarge { url: url.to_string(), max: MAX_DOWNLOAD });
        }
        if began.elapsed() > FETCH_TIMEOUT {
            break Err(FetchError::Timeout { url: url.to_string(), after: FETCH_TIMEOUT });
        }
        std::thread::sleep(POLL);
    };
    let stderr = read_start(&err_path, MAX_STDERR);
    let _ = std::fs::remove_file(&err_path);
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    // curl's --max-filesize refusal (exit 63) is a size error like ours.
    if matches!(client, Client::Curl(_)) && status.code() == Some(63) || size() > MAX_DOWNLOAD {
        return Err(FetchError::TooLarge { url: url.to_string(), max: MAX_DOWNLOAD });
    }
    if !status.success() {
        return Err(FetchError::Client { url: url.to_string(), client: client.name(), status: status.to_string(), stderr });
    }
    Ok(())
}

/// The first `max` bytes of a file as one line of text.
fn read_start(path: &Path, max: usize) -> String {
    let mut buf = Vec::new();
    if let Ok(f) = File::open(path) {
        let _ = f.take(max as u64).read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Keeps the parts (joined, each ending in a newline) as the cached copy,
/// rewriting it only when its bytes differ: flash wears with each write.
/// Returns whether it was rewritten.
fn keep_copy(parts: &[PathBuf], cache: &Path) -> Result<bool, FetchError> {
    if same_bytes(parts, cache).map_err(io_err("comparing with", cache))? {
        return Ok(false);
    }
    let dir = cache.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    let tmp = cache.with_file_name(format!(".{}.new", cache.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()));
    let written = (|| {
        let mut out = std::io::BufWriter::new(File::create(&tmp)?);
        joined(parts, |chunk| out.write_all(chunk))?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, cache)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err("writing", cache)(e));
    }
    Ok(true)
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FetchError {
    let path = path.to_path_buf();
    move |source| FetchError::Io { what, path, source }
}

/// Feeds the parts to `f` as the cached copy holds them: a part that does
/// not end in a newline gets one, so that its last line and the next
/// part's first never merge.
fn joined(parts: &[PathBuf], mut f: impl FnMut(&[u8]) -> std::io::Result<()>) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    for p in parts {
        let mut file = File::open(p)?;
        let mut last = b'\n';
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            last = buf[n - 1];
            f(&buf[..n])?;
        }
        if last != b'\n' {
            f(b"\n")?;
        }
    }
    Ok(())
}

/// Whether the joined parts equal the file at `cache`, compared a chunk at
/// a time (never both copies in memory).
fn same_bytes(parts: &[PathBuf], cache: &Path) -> std::io::Result<bool> {
    let mut old = match File::open(cache) {
        Ok(f) => std::io::BufReader::new(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let mut same = true;
    let mut theirs = Vec::new();
    joined(parts, |chunk| {
        if same {
            theirs.resize(chunk.len(), 0);
            match old.read_exact(&mut theirs) {
                Ok(()) => same = theirs == chunk,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => same = false,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    })?;
    // And the old copy has nothing more.
    Ok(same && old.read(&mut [0u8; 1])? == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("leash-fetch-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    #[test]
    fn cached_copy_rewritten_only_when_bytes_change() {
        let d = dir("keep");
        let (a, b) = (d.join("a"), d.join("b"));
        std::fs::write(&a, "a.example").expect("write");
        std::fs::write(&b, "b.example\n").expect("write");
        let cache = d.join("lists").join("l");
        let parts = [a.clone(), b.clone()];
        assert!(keep_copy(&parts, &cache).expect("first copy"));
        assert_eq!(std::fs::read_to_string(&cache).unwrap_or_default(), "a.example\nb.example\n");
        let mtime = std::fs::metadata(&cache).and_then(|m| m.modified()).ok();
        assert!(!keep_copy(&parts, &cache).expect("same"), "same bytes: no write");
        assert_eq!(std::fs::metadata(&cache).and_then(|m| m.modified()).ok(), mtime);
        std::fs::write(&b, "b.example\nc.example\n").expect("write");
        assert!(keep_copy(&parts, &cache).expect("longer"));
        std::fs::write(&b, "b.example\n").expect("write");
        assert!(keep_copy(&parts, &cache).expect("shorter"));
        assert_eq!(std::fs::read_to_string(&cache).unwrap_or_default(), "a.example\nb.example\n");
        std::fs::write(&b, "b.exampl\n\n").expect("write");
        assert!(keep_copy(&parts, &cache).expect("same length, other bytes"));
        assert!(!d.join("lists").join(".l.new").exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn client_command_lines() {
        let out = Path::new("/tmp/o");
        let args = |c: Client| -> Vec<String> {
            c.command("https://example.org/l", out).get_args().map(|a| a.to_string_lossy().into_owned()).collect()
        };
        assert_eq!(args(Client::UclientFetch("/bin/uclient-fetch".into())), ["-q", "-T", "120", "-O", "/tmp/o", "https://example.org/l"]);
        assert_eq!(args(Client::Wget("/usr/bin/wget".into())), ["-q", "-T", "120", "-O", "/tmp/o", "https://example.org/l"]);
        let curl = args(Client::Curl("/usr/bin/curl".into()));
        assert_eq!(curl.last().map(String::as_str), Some("https://example.org/l"));
        assert!(curl.windows(2).any(|w| w == ["--max-filesize", &MAX_DOWNLOAD.to_string()]));
    }

    /// A fake client: a shell script standing in for curl.
    fn fake_client(d: &Path, script: &str) -> Client {
        use std::os::unix::fs::PermissionsExt;
        let p = d.join("fake-curl");
        std::fs::write(&p, format!("#!/bin/sh\n{script}\n")).expect("write");
        let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755));
        Client::Curl(p)
    }

    fn job(d: &Path, client: Client) -> Job {
        Job {
            def: ListDef {
                name: "l".into(),
                files: vec![],
                selectors: vec![],
                urls: vec!["http://192.0.2.1/l".into()],
                refresh: crate::config::DEFAULT_LIST_REFRESH,
            },
            cache: d.join("lists").join("l"),
            tmp_dir: d.to_path_buf(),
            client: Some(client),
        }
    }

    #[test]
    fn refresh_checks_and_keeps_the_last_good_copy() {
        let d = dir("refresh");
        // The output file is the argument before the URL.
        let write = |body: &str| format!("for a; do o=$p; p=$a; done; printf '{body}' > \"$o\"");
        let good = refresh(&job(&d, fake_client(&d, &write("a.example\\n192.0.2.0/24\\n")))).expect("good");
        assert!(good.changed);
        assert_eq!(good.list.len(), 2);
        assert!(!refresh(&job(&d, fake_client(&d, &write("a.example\\n192.0.2.0/24\\n")))).expect("same").changed);

        let garbage = refresh(&job(&d, fake_client(&d, &write("<html>\\n<b>oops</b>\\n"))));
        assert!(matches!(garbage, Err(FetchError::Garbage { .. })), "{garbage:?}");
        let failed = refresh(&job(&d, fake_client(&d, "echo 'curl: (22) The requested URL returned error: 404' >&2; exit 22")));
        let msg = failed.map(|_| ()).map_err(|e| e.to_string()).expect_err("404");
        assert!(msg.contains("404") && msg.contains("http://192.0.2.1/l"), "{msg}");
        let big = refresh(&job(&d, fake_client(&d, "for a; do o=$p; p=$a; done; head -c 40000000 /dev/zero > \"$o\"")));
        assert!(matches!(big, Err(FetchError::TooLarge { .. })), "{big:?}");
        let none = refresh(&Job { client: None, ..job(&d, fake_client(&d, "")) });
        assert!(matches!(none, Err(FetchError::NoClient)));
        // Every failure left the good copy alone, and no temporary file.
        assert_eq!(std::fs::read_to_string(d.join("lists").join("l")).unwrap_or_default(), "a.example\n192.0.2.0/24\n");
        let left: Vec<_> = std::fs::read_dir(&d).into_iter().flatten().flatten().map(|e| e.file_name()).filter(|n| n.to_string_lossy().starts_with("leash-list-")).collect();
        assert!(left.is_empty(), "{left:?}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
