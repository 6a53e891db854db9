//! Deny-list files (SPEC §3): plain domains, hosts-file lines, adblock
//! domain rules and CIDRs, with `#` and `!` comments.
//!
//! Lists come from third parties and contain all sorts of syntax, so a line
//! leash cannot read is counted and reported once, never fatal.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::IpAddr;
use std::path::Path;

use crate::policy::cidr::Cidr;
use crate::config::{Config, ConfigError, ConfigErrors, ListDef};
use crate::policy::domainset::{DomainSet, DomainSetBuilder};
use crate::policy::netset::NetSet;
use crate::policy::selector::{check_name, Destination, Selector};

/// What one list file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListContent {
    /// Valid DNS names (`selector::check_name`), lower-cased.
    pub domains: DomainSet,
    /// Sorted, deduplicated.
    pub nets: Vec<Cidr>,
    pub bad_lines: usize,
    /// 1-based line number and (trimmed, possibly shortened) text of the
    /// first bad line.
    pub first_bad: Option<(usize, String)>,
}

/// Names hosts files map to loopback for the machine itself; they are not
/// entries to deny.
const HOSTS_SELF_NAMES: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
];

/// Longest bad-line text kept for the report; third-party files can hold
/// megabyte-long lines.
const MAX_BAD_TEXT: usize = 120;

/// Names go straight into a `DomainSetBuilder`, which codes them as they
/// come: a million-line list never exists as a million `String`s, nor as
/// its text.
pub fn parse_list(text: &str) -> ListContent {
    // Reading from a byte slice cannot fail.
    parse_reader(text.as_bytes()).unwrap_or_default()
}

/// Parses line by line from a reader: a big list file is never in memory
/// whole (and, with glibc, freeing a 30 MB file buffer would also make
/// later big allocations come from the heap and stay resident).
fn parse_reader(mut r: impl BufRead) -> std::io::Result<ListContent> {
    let mut c = ListContent::default();
    let mut domains = DomainSetBuilder::new();
    let mut buf = Vec::new();
    for i in 0.. {
        buf.clear();
        if r.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        let bytes = buf.strip_suffix(b"\n").unwrap_or(&buf);
        // Bytes that are not UTF-8 only spoil their own line.
        let raw = String::from_utf8_lossy(bytes);
        let line = strip_comment(raw.trim_end_matches('\r'));
        // Lists are ASCII; the Unicode-aware trim and split cost a third of
        // the parse of a million-line list, so they are kept for lines
        // that need them.
        let ok = if line.is_ascii() {
            let line = line.trim_ascii();
            if line.is_empty() {
                continue;
            }
            parse_line(line.split_ascii_whitespace(), &mut domains, &mut c.nets)
        } else {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            parse_line(line.split_whitespace(), &mut domains, &mut c.nets)
        };
        if ok.is_err() {
            c.bad_lines += 1;
            if c.first_bad.is_none() {
                c.first_bad = Some((i + 1, shorten(raw.trim())));
            }
        }
    }
    c.nets.sort_unstable();
    c.nets.dedup();
    c.domains = domains.build();
    Ok(c)
}

/// Drops whole-line `#`/`!` comments and trailing ` # comment`s. A `#` not
/// after whitespace stays, so adblock cosmetic rules (`example.com##.ad`)
/// are reported as bad rather than read as `example.com`.
fn strip_comment(line: &str) -> &str {
    let t = line.trim_start();
    if t.starts_with('#') || t.starts_with('!') {
        return "";
    }
    let b = t.as_bytes();
    for i in 1..b.len() {
        if b[i] == b'#' && b[i - 1].is_ascii_whitespace() {
            return &t[..i];
        }
    }
    t
}

fn shorten(s: &str) -> String {
    if s.len() <= MAX_BAD_TEXT {
        return s.to_string();
    }
    let mut end = MAX_BAD_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn is_hosts_self_name(name: &str) -> bool {
    HOSTS_SELF_NAMES.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Whether a word should be read as an address rather than a name (the
/// same rule `Selector::from_str` uses).
fn looks_like_net(s: &str) -> bool {
    s.contains(':') || s.contains('/') || s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// Adds the entries of one non-empty, comment-free line, given as its words;
/// `Err` when the line
/// is (partly) unreadable. Valid names on a hosts line with a bad name are
/// still kept.
fn parse_line<'a>(
    words: impl Iterator<Item = &'a str>,
    domains: &mut DomainSetBuilder,
    nets: &mut Vec<Cidr>,
) -> Result<(), ()> {
    let mut words = words.peekable();
    let first = words.next().ok_or(())?;
    let single = words.peek().is_none();

    if let Some(rule) = first.strip_prefix("||") {
        // `||example.com^` optionally followed by `$options`.
        if !single {
            return Err(());
        }
        let (name, tail) = rule.split_once('^').ok_or(())?;
        if !(tail.is_empty() || tail.starts_with('$')) {
            return Err(());
        }
        domains.push(check_name(name).ok_or(())?);
        return Ok(());
    }

    if single {
        if looks_like_net(first) {
            nets.push(first.parse().map_err(|_| ())?);
        } else {
            let name = check_name(first).ok_or(())?;
            if !is_hosts_self_name(name) {
                domains.push(name);
            }
        }
        return Ok(());
    }

    // Hosts-file line: an address (the sinkhole, not an entry) and names.
    first.parse::<IpAddr>().map_err(|_| ())?;
    let mut ok = true;
    for word in words {
        match check_name(word) {
            Some(name) if is_hosts_self_name(name) => {}
            Some(name) if looks_like_net(name) => {
                // `0.0.0.0 0.0.0.0` appears in popular hosts lists.
                if name.parse::<IpAddr>().is_err() {
                    ok = false;
                }
            }
            Some(name) => {
                domains.push(name);
            }
            None => ok = false,
        }
    }
    if ok {
        Ok(())
    } else {
        Err(())
    }
}

/// A loaded `[list.NAME]`: its files and selectors merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadedList {
    pub name: String,
    /// Each matches itself and every name below it.
    pub domains: DomainSet,
    pub nets: NetSet,
    /// Selectors that are neither suffix domains nor nets: `=exact.name`,
    /// `country:`, `asn:`, `any`.
    pub selectors: Vec<Selector>,
    pub bad_lines: usize,
}

impl LoadedList {
    pub fn matches(&self, dst: &Destination<'_>) -> bool {
        if dst.names.iter().any(|n| self.matches_name(n)) {
            return true;
        }
        if let Some(addr) = dst.addr {
            if self.nets.contains(addr) {
                return true;
            }
        }
        self.selectors.iter().any(|s| s.matches(dst))
    }

    /// Whether the name or one of its parent domains is listed (any case,
    /// trailing dot ignored).
    pub fn matches_name(&self, name: &str) -> bool {
        self.domains.matches(name)
    }

    /// Number of entries (domains, nets and other selectors).
    pub fn len(&self) -> usize {
        self.domains.len() + self.nets.len() + self.selectors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Builds a list from a definition and the contents of its files.
    pub fn build(def: &ListDef, contents: impl IntoIterator<Item = ListContent>) -> LoadedList {
        let mut l = LoadedList { name: def.name.clone(), ..LoadedList::default() };
        let mut domains: Option<DomainSetBuilder> = None;
        let mut nets = Vec::new();
        for c in contents {
            match &mut domains {
                // The first file's buffers are reused, not copied: with one
                // big file per list, merging costs no second copy.
                None => domains = Some(c.domains.into_builder()),
                Some(b) => b.add_set(c.domains),
            }
            nets.extend(c.nets);
            l.bad_lines += c.bad_lines;
        }
        let mut domains = domains.unwrap_or_default();
        for s in &def.selectors {
            match s {
                Selector::Domain { name, exact: false } => {
                    domains.push(name);
                }
                Selector::Net(c) => nets.push(*c),
                other => l.selectors.push(other.clone()),
            }
        }
        l.domains = domains.build();
        l.nets = NetSet::new(nets);
        l.selectors.sort_unstable();
        l.selectors.dedup();
        l
    }
}

/// Reads every file of every list in the config; a missing/unreadable file
/// is a ConfigError (file = the list file path, line 0, key
/// `list.NAME.files`). Bad lines are not errors: they are counted in
/// `LoadedList::bad_lines` and reported once per file with `tracing::warn!`.
pub fn load_all(config: &Config) -> Result<BTreeMap<String, LoadedList>, ConfigErrors> {
    let mut errors = Vec::new();
    let mut out = BTreeMap::new();
    for (name, def) in &config.lists {
        let mut contents = Vec::with_capacity(def.files.len());
        for path in &def.files {
            match load_file(path) {
                Ok(c) => {
                    if let Some((line, text)) = &c.first_bad {
                        tracing::warn!(
                            list = %name,
                            file = %path.display(),
                            bad_lines = c.bad_lines,
                            first_bad_line = line,
                            first_bad_text = %text,
                            "list file has lines that are not domains, hosts entries, adblock domain rules or addresses; they are ignored"
                        );
                    }
                    contents.push(c);
                }
                Err(e) => errors.push(ConfigError {
                    file: path.clone(),
                    line: 0,
                    key: format!("list.{name}.files"),
                    message: format!("cannot read list file: {e}"),
                }),
            }
        }
        if !def.urls.is_empty() {
            // The last good download stands in until the next one works.
            let cache = cache_path(&config.daemon.state_dir, name);
            match load_file(&cache) {
                Ok(c) => contents.push(c),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    tracing::info!(list = %name, "no downloaded copy yet; the list's URLs add their entries once fetched")
                }
                // A cache is no configuration: never a reason to refuse it.
                Err(e) => tracing::warn!(list = %name, file = %cache.display(), error = %e, "cannot read the last downloaded copy"),
            }
        }
        out.insert(name.clone(), LoadedList::build(def, contents));
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Hands the memory freed while loading lists back to the kernel. glibc
/// keeps freed heap memory resident (a loaded list's chunk buffers and
/// merged runs, a few MiB for a million names); musl, as on OpenWrt,
/// returns it by itself.
pub fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Where the last good download of a subscribed list is kept: its URLs'
/// contents in order, one file (a list name, `[A-Za-z0-9_-]+`, cannot
/// leave the directory).
pub fn cache_path(state_dir: &Path, list: &str) -> std::path::PathBuf {
    state_dir.join("lists").join(list)
}

/// Reads and parses one list file. Bytes that are not UTF-8 only spoil
/// their own line (they make it bad), not the file.
pub fn load_file(path: &Path) -> std::io::Result<ListContent> {
    let file = std::fs::File::open(path)?;
    parse_reader(std::io::BufReader::with_capacity(16 * 1024, file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const EXAMPLE: &str = include_str!("../../../etc/lists/vendor-telemetry.txt");

    fn net(s: &str) -> Cidr {
        s.parse().unwrap_or_else(|_| panic!("{s}"))
    }

    /// Alphabetical, for readable expectations (the set's own order is by
    /// reversed name).
    fn names(set: &DomainSet) -> Vec<String> {
        let mut v: Vec<String> = set.iter().collect();
        v.sort();
        v
    }

    fn doms(c: &ListContent) -> Vec<String> {
        names(&c.domains)
    }

    #[test]
    fn every_line_form() {
        let c = parse_list(
            "Example.COM.\n\
             0.0.0.0 ads.example.com\n\
             127.0.0.1 a.example.net b.example.net\n\
             :: v6.example.com\n\
             ::1 localhost ip6-localhost ip6-loopback\n\
             127.0.0.1 localhost localhost.localdomain broadcasthost local\n\
             0.0.0.0 0.0.0.0\n\
             ||adblock.example.com^\n\
             ||opts.example.net^$third-party,important\n\
             192.0.2.7\n\
             198.51.100.0/24\n\
             2001:db8::/32\n\
             2001:db8::1\n\
             localhost\n",
        );
        assert_eq!(
            doms(&c),
            [
                "a.example.net",
                "adblock.example.com",
                "ads.example.com",
                "b.example.net",
                "example.com",
                "opts.example.net",
                "v6.example.com"
            ]
        );
        assert_eq!(c.nets, [net("192.0.2.7"), net("198.51.100.0/24"), net("2001:db8::/32"), net("2001:db8::1")]);
        assert_eq!((c.bad_lines, c.first_bad), (0, None));
    }

    #[test]
    fn comments_and_blanks() {
        let c = parse_list("# comment\n! adblock comment\n   # indented\n\n \t \nexample.com # trailing\nexample.net\t# tab\n");
        assert_eq!(doms(&c), ["example.com", "example.net"]);
        assert_eq!(c.bad_lines, 0);
    }

    #[test]
    fn dedups_and_sorts() {
        let c = parse_list("b.example\na.example\nB.example\n0.0.0.0 a.example\n192.0.2.0/24\n192.0.2.9/24\n");
        assert_eq!(doms(&c), ["a.example", "b.example"]);
        assert_eq!(c.nets, [net("192.0.2.0/24")]);
    }

    #[test]
    fn bad_lines_counted_first_kept() {
        let c = parse_list(
            "good.example\n\
             example.com##.ad-banner\n\
             @@||allowed.example^\n\
             /ads/*\n\
             ||wild*.example^\n\
             ||example.com^|x\n\
             ||a.example^ extra\n\
             not_an_ip a.example\n\
             0.0.0.0 ok.example bad..name\n\
             1024\n\
             300.1.2.3\n\
             192.0.2.0/33\n\
             *.example.com\n\
             exa mple\n",
        );
        assert_eq!(c.bad_lines, 13);
        assert_eq!(c.first_bad, Some((2, "example.com##.ad-banner".to_string())));
        // A hosts line with one bad name still contributes its good ones.
        assert_eq!(doms(&c), ["good.example", "ok.example"]);
    }

    #[test]
    fn hostile_input_never_panics() {
        let long = "a".repeat(1_000_000);
        let c = parse_list(&long);
        assert_eq!(c.bad_lines, 1);
        let (_, text) = c.first_bad.unwrap_or_default();
        assert!(text.len() <= MAX_BAD_TEXT + '…'.len_utf8());

        let multibyte = "é".repeat(10_000);
        let c = parse_list(&multibyte);
        assert_eq!(c.bad_lines, 1);

        let junk: Vec<u8> = (0..=255u8).cycle().take(64 * 1024).collect();
        let c = parse_list(&String::from_utf8_lossy(&junk));
        assert!(c.bad_lines > 0);

        let c = parse_list("a.example\r\n0.0.0.0 b.example\r\n# c\r\n\r\n192.0.2.1\r\n");
        assert_eq!(doms(&c), ["a.example", "b.example"]);
        assert_eq!(c.nets, [net("192.0.2.1")]);
        assert_eq!(c.bad_lines, 0);

        for s in ["", "\n", "||", "||^", "|| ^", "#", "!", "::", "0.0.0.0", "\0", "\r", " #", "a #", "||a^$"] {
            let _ = parse_list(s);
        }
        assert_eq!(doms(&parse_list("||a.example^$")), ["a.example"]);
    }

    #[test]
    fn example_file_reads_cleanly() {
        let c = parse_list(EXAMPLE);
        assert_eq!((c.bad_lines, &c.first_bad), (0, &None));
        assert_eq!(
            doms(&c),
            [
                "ads.example.com",
                "analytics.example.com",
                "beacon.example.net",
                "collector.example.com",
                "crash-report.example.net",
                "metrics.example.net",
                "telemetry.example.com",
                "tracker.example.net"
            ]
        );
        assert_eq!(c.nets, [net("192.0.2.10"), net("198.51.100.0/24"), net("203.0.113.0/25"), net("2001:db8::/32")]);
    }

    fn list(domains: &[&str], nets: &[&str], selectors: &[&str]) -> LoadedList {
        let def =
            ListDef { name: "t".into(), files: vec![], selectors: selectors.iter().filter_map(|s| s.parse().ok()).collect(), urls: vec![], refresh: crate::config::DEFAULT_LIST_REFRESH };
        let content = ListContent {
            domains: DomainSet::from_names(domains),
            nets: nets.iter().map(|n| net(n)).collect(),
            ..ListContent::default()
        };
        LoadedList::build(&def, [content])
    }

    fn dst<'a>(names: &'a [String], addr: Option<&str>) -> Destination<'a> {
        Destination { addr: addr.and_then(|a| a.parse().ok()), names, trusted: names.len(), country: None, asn: None }
    }

    #[test]
    fn matching() {
        let l = list(
            &["example.com", "tracker.example.net"],
            &["198.51.100.0/24"],
            &["=exact.example.org", "ring.example", "country:CN"],
        );
        assert_eq!(names(&l.domains), ["example.com", "ring.example", "tracker.example.net"]);
        assert_eq!(l.selectors.len(), 2);
        assert_eq!(l.len(), 6);
        assert!(!l.is_empty());
        for (name, want) in [
            ("example.com", true),
            ("a.b.example.com", true),
            ("A.Example.COM.", true),
            ("badexample.com", false),
            ("com", false),
            ("example.net", false),
            ("x.tracker.example.net", true),
            ("exact.example.org", true),
            ("sub.exact.example.org", false),
            ("cdn.ring.example", true),
            ("", false),
            (".", false),
        ] {
            let names = vec![name.to_string()];
            assert_eq!(l.matches(&dst(&names, None)), want, "{name}");
        }
        let none: Vec<String> = vec![];
        assert!(l.matches(&dst(&none, Some("198.51.100.200"))));
        assert!(!l.matches(&dst(&none, Some("203.0.113.1"))));
        assert!(!l.matches(&dst(&none, None)));
        let cn = Destination { country: Some(*b"CN"), ..dst(&none, Some("203.0.113.1")) };
        assert!(l.matches(&cn));
        let several = vec!["unrelated.example".to_string(), "x.example.com".to_string()];
        assert!(l.matches(&dst(&several, None)));
    }

    fn config_with(lists: &[(&str, Vec<PathBuf>)]) -> Config {
        let mut c = match crate::config::parse_toml(Path::new("t.toml"), "") {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        for (name, files) in lists {
            c.lists.insert(name.to_string(), ListDef { name: name.to_string(), files: files.clone(), selectors: vec![], urls: vec![], refresh: crate::config::DEFAULT_LIST_REFRESH });
        }
        c
    }

    #[test]
    fn load_all_reads_files_and_reports_missing_ones() {
        let dir = std::env::temp_dir().join(format!("leash-lists-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let a = dir.join("a.txt");
        let b = dir.join("b.txt");
        std::fs::write(&a, "a.example\nbad line here\n192.0.2.0/24\n").expect("write");
        std::fs::write(&b, b"b.example\n\xff\xfe junk\n").expect("write");
        let lists = load_all(&config_with(&[("t", vec![a.clone(), b.clone()])])).expect("loads");
        let t = &lists["t"];
        assert_eq!(t.name, "t");
        assert_eq!(names(&t.domains), ["a.example", "b.example"]);
        assert_eq!(t.nets, NetSet::new(vec![net("192.0.2.0/24")]));
        assert_eq!(t.bad_lines, 2);

        let missing = dir.join("missing.txt");
        let err = load_all(&config_with(&[("t", vec![a]), ("u", vec![missing.clone()])])).expect_err("missing file");
        assert_eq!(err.0.len(), 1);
        let e = &err.0[0];
        assert_eq!((&e.file, e.line, e.key.as_str()), (&missing, 0, "list.u.files"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn load_all_uses_the_cached_download_of_a_subscribed_list() {
        let dir = std::env::temp_dir().join(format!("leash-lists-cache-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let text = format!(
            "[daemon]\nstate_dir = \"{}\"\n[list.sub]\nurls = [\"https://example.org/l\"]\nselectors = [\"=exact.example\"]\n",
            dir.display()
        );
        let config = crate::config::parse_toml(Path::new("t.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
        // No copy yet: the list has its selectors only, and that is no error.
        let lists = load_all(&config).expect("loads without a cached copy");
        assert_eq!(lists["sub"].len(), 1);
        let cache = cache_path(&dir, "sub");
        assert_eq!(cache, dir.join("lists").join("sub"));
        std::fs::create_dir_all(dir.join("lists")).expect("dir");
        std::fs::write(&cache, "a.example\n192.0.2.0/24\nbad line\n").expect("write");
        let lists = load_all(&config).expect("loads");
        assert_eq!((names(&lists["sub"].domains), lists["sub"].len(), lists["sub"].bad_lines), (vec!["a.example".to_string()], 3, 1));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
