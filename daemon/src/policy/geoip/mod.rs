//! Country and autonomous system of an address, for the `country:CC` and
//! `asn:N` selectors (SPEC §2–3, `[geoip]`).
//!
//! Two kinds of source, chosen by file extension:
//! - `.mmdb`: a MaxMind DB (GeoLite2-Country/City, GeoLite2-ASN, DB-IP lite),
//!   memory-mapped so that a 7 MB database is page cache, not heap.
//! - anything else: a CIDR list, one `CIDR VALUE` per line (whitespace or
//!   comma separated, `#` comments), VALUE a country code (`CN`) for the
//!   country database or an AS number (`4808`, `AS4808`) for the ASN one.
//!   For routers without room for an mmdb.

pub mod mmdb_writer;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use maxminddb::{Mmap, Reader};
use serde::Deserialize;

use crate::policy::cidr::Cidr;
use crate::config::GeoipConfig;

/// What the databases say about one address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GeoInfo {
    /// ISO 3166 alpha-2, upper-case.
    pub country: Option<[u8; 2]>,
    pub asn: Option<u32>,
    /// Only MaxMind ASN databases carry it.
    pub as_org: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum GeoipError {
    /// The file cannot be opened, mapped or read.
    #[error("cannot read geoip database {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A `.mmdb` file that is not a MaxMind DB (truncated, corrupt, other).
    #[error("{} is not a readable MaxMind database: {source}", path.display())]
    Mmdb {
        path: PathBuf,
        #[source]
        source: maxminddb::MaxMindDbError,
    },
    /// A CIDR list without a single readable line is the wrong file, not a
    /// list with a few typos.
    #[error("{} has no `CIDR VALUE` line leash can read ({bad_lines} unreadable lines)", path.display())]
    NoEntries { path: PathBuf, bad_lines: usize },
}

/// The configured databases; `GeoIp::none()` when `[geoip]` is absent.
#[derive(Debug, Default)]
pub struct GeoIp {
    country: Option<Db<[u8; 2]>>,
    asn: Option<Db<u32>>,
}

#[derive(Debug)]
enum Db<V> {
    Mmdb {
        path: PathBuf,
        reader: Reader<Mmap>,
        /// A database whose records do not decode is reported once, not on
        /// every connection.
        warned: AtomicBool,
    },
    List(Ranges<V>),
}

impl GeoIp {
    pub fn none() -> GeoIp {
        GeoIp::default()
    }

    pub fn open(cfg: &GeoipConfig) -> Result<GeoIp, GeoipError> {
        let country = match &cfg.country_db {
            Some(p) => Some(open_db(p, parse_country)?),
            None => None,
        };
        let asn = match &cfg.asn_db {
            Some(p) => Some(open_db(p, parse_asn)?),
            None => None,
        };
        Ok(GeoIp { country, asn })
    }

    pub fn is_none(&self) -> bool {
        self.country.is_none() && self.asn.is_none()
    }

    pub fn lookup(&self, ip: IpAddr) -> GeoInfo {
        // `::ffff:a.b.c.d` (dual-stack sockets, NAT64 paths) is an IPv4 address;
        // neither kind of source files it under IPv6.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let mut info = GeoInfo::default();
        match &self.country {
            Some(Db::List(r)) => info.country = r.get(ip),
            Some(Db::Mmdb { path, reader, warned }) => {
                info.country = decode::<CountryRecord>(path, reader, warned, ip).and_then(|rec| {
                    let code = rec.country.and_then(|p| p.iso_code);
                    code.or(rec.registered_country.and_then(|p| p.iso_code)).and_then(country_code)
                });
            }
            None => {}
        }
        match &self.asn {
            Some(Db::List(r)) => info.asn = r.get(ip),
            Some(Db::Mmdb { path, reader, warned }) => {
                if let Some(rec) = decode::<AsnRecord>(path, reader, warned, ip) {
                    info.asn = rec.autonomous_system_number;
                    info.as_org = rec.autonomous_system_organization.map(str::to_string);
                }
            }
            None => {}
        }
        info
    }
}

/// The fields leash reads of a GeoLite2-Country/City or DB-IP country record.
#[derive(Deserialize)]
struct CountryRecord<'a> {
    #[serde(borrow)]
    country: Option<Place<'a>>,
    #[serde(borrow)]
    registered_country: Option<Place<'a>>,
}

#[derive(Deserialize)]
struct Place<'a> {
    iso_code: Option<&'a str>,
}

/// The fields of a GeoLite2-ASN or DB-IP ASN record.
#[derive(Deserialize)]
struct AsnRecord<'a> {
    autonomous_system_number: Option<u32>,
    autonomous_system_organization: Option<&'a str>,
}

fn decode<'a, T: Deserialize<'a>>(path: &Path, reader: &'a Reader<Mmap>, warned: &AtomicBool, ip: IpAddr) -> Option<T> {
    let result = reader.lookup(ip).and_then(|r| r.decode::<T>());
    match result {
        Ok(rec) => rec,
        Err(e) => {
            if !warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(file = %path.display(), addr = %ip, error = %e, "geoip database record does not decode; such addresses get no country/ASN");
            }
            None
        }
    }
}

fn open_db<V: Copy + Eq>(path: &Path, parse_value: fn(&str) -> Option<V>) -> Result<Db<V>, GeoipError> {
    let read_err = |source| GeoipError::Read { path: path.to_path_buf(), source };
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("mmdb")) {
        let file = std::fs::File::open(path).map_err(read_err)?;
        // SAFETY: mapping is only unsound if the file is truncated or changed
        // in place while mapped. Database updates (opkg, cron scripts) replace
        // the file by rename; the mapping keeps the old inode.
        let map = unsafe { Mmap::map(&file) }.map_err(read_err)?;
        let reader = Reader::from_source(map)
            .map_err(|source| GeoipError::Mmdb { path: path.to_path_buf(), source })?;
        let meta = reader.metadata();
        tracing::info!(file = %path.display(), database_type = %meta.database_type, build_epoch = meta.build_epoch, "geoip database mapped");
        return Ok(Db::Mmdb { path: path.to_path_buf(), reader, warned: AtomicBool::new(false) });
    }
    let bytes = std::fs::read(path).map_err(read_err)?;
    let parsed = parse_cidr_list(&String::from_utf8_lossy(&bytes), parse_value);
    if let Some((line, text)) = &parsed.first_bad {
        tracing::warn!(
            file = %path.display(),
            bad_lines = parsed.bad_lines,
            first_bad_line = line,
            first_bad_text = %text,
            "geoip CIDR list has lines that are not `CIDR VALUE`; they are ignored"
        );
    }
    if parsed.entries.is_empty() && parsed.bad_lines > 0 {
        return Err(GeoipError::NoEntries { path: path.to_path_buf(), bad_lines: parsed.bad_lines });
    }
    Ok(Db::List(Ranges::build(parsed.entries)))
}

/// `CN`, `cn` → `*b"CN"`.
fn country_code(s: &str) -> Option<[u8; 2]> {
    match s.as_bytes() {
        [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
            Some([a.to_ascii_uppercase(), b.to_ascii_uppercase()])
        }
        _ => None,
    }
}

fn parse_country(s: &str) -> Option<[u8; 2]> {
    country_code(s)
}

/// `4808`, `AS4808`, `as4808`.
fn parse_asn(s: &str) -> Option<u32> {
    let n = s.strip_prefix("AS").or_else(|| s.strip_prefix("as")).unwrap_or(s);
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

struct ParsedList<V> {
    entries: Vec<(Cidr, V)>,
    bad_lines: usize,
    first_bad: Option<(usize, String)>,
}

fn parse_cidr_list<V>(text: &str, parse_value: fn(&str) -> Option<V>) -> ParsedList<V> {
    let mut out = ParsedList { entries: Vec::new(), bad_lines: 0, first_bad: None };
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split(|c: char| c.is_whitespace() || c == ',').filter(|w| !w.is_empty());
        let entry = match (words.next(), words.next(), words.next()) {
            (Some(net), Some(value), None) => net.parse::<Cidr>().ok().zip(parse_value(value)),
            _ => None,
        };
        match entry {
            Some(e) => out.entries.push(e),
            None => {
                out.bad_lines += 1;
                if out.first_bad.is_none() {
                    out.first_bad = Some((i + 1, line.chars().take(120).collect()));
                }
            }
        }
    }
    out
}

/// Longest-prefix match over a CIDR list, stored as the sorted start
/// addresses of disjoint ranges (nested prefixes flattened: the narrowest
/// wins) with their values: a binary search per lookup, ~7 bytes per IPv4
/// range for countries.
#[derive(Debug)]
struct Ranges<V> {
    v4_starts: Box<[u32]>,
    v4_values: Box<[Option<V>]>,
    v6_starts: Box<[u128]>,
    v6_values: Box<[Option<V>]>,
}

impl<V: Copy + Eq> Ranges<V> {
    fn build(entries: Vec<(Cidr, V)>) -> Ranges<V> {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (net, value) in entries {
            let (start, bits) = match net.addr() {
                IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
                IpAddr::V6(a) => (u128::from(a), 128),
            };
            let host_bits = bits - u32::from(net.len());
            let span = if host_bits == 128 { u128::MAX } else { (1u128 << host_bits) - 1 };
            let item = (start, start + span, value);
            if bits == 32 {
                v4.push(item);
            } else {
                v6.push(item);
            }
        }
        let (v4_starts, v4_values): (Vec<u32>, Vec<Option<V>>) =
            flatten(v4, u128::from(u32::MAX)).into_iter().map(|(s, v)| (s as u32, v)).unzip();
        let (v6_starts, v6_values): (Vec<u128>, Vec<Option<V>>) = flatten(v6, u128::MAX).into_iter().unzip();
        Ranges {
            v4_starts: v4_starts.into_boxed_slice(),
            v4_values: v4_values.into_boxed_slice(),
            v6_starts: v6_starts.into_boxed_slice(),
            v6_values: v6_values.into_boxed_slice(),
        }
    }

    fn get(&self, ip: IpAddr) -> Option<V> {
        let (i, values) = match ip {
            IpAddr::V4(a) => (self.v4_starts.partition_point(|&s| s <= u32::from(a)), &self.v4_values),
            IpAddr::V6(a) => (self.v6_starts.partition_point(|&s| s <= u128::from(a)), &self.v6_values),
        };
        i.checked_sub(1).and_then(|i| values.get(i).copied().flatten())
    }
}

/// Turns prefixes `(first, last, value)` (nested or disjoint, as prefixes
/// are) into change points `(start, value from here on)`, the narrowest
/// prefix winning and, for the same prefix twice, the later line.
fn flatten<V: Copy + Eq>(mut nets: Vec<(u128, u128, V)>, max: u128) -> Vec<(u128, Option<V>)> {
    // Wider first at the same start; stable, so equal prefixes keep file order.
    nets.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut out: Vec<(u128, Option<V>)> = Vec::new();
    let mut open: Vec<(u128, V)> = Vec::new();
    fn emit<V: Copy + Eq>(out: &mut Vec<(u128, Option<V>)>, at: u128, value: Option<V>) {
        if let Some(last) = out.last_mut() {
            if last.0 == at {
                last.1 = value;
                let n = out.len();
                let before = if n >= 2 { out[n - 2].1 } else { None };
                if before == value {
                    out.pop();
                }
                return;
            }
        }
        if out.last().and_then(|l| l.1) != value {
            out.push((at, value));
        }
    }
    let close_until = |open: &mut Vec<(u128, V)>, out: &mut Vec<(u128, Option<V>)>, before: Option<u128>| {
        while let Some(&(last, _)) = open.last() {
            if before.is_some_and(|b| last >= b) {
                break;
            }
            open.pop();
            if last == max {
                // Ranges ending at the top of the space leave nothing after them.
                open.clear();
                break;
            }
            emit(out, last + 1, open.last().map(|o| o.1));
        }
    };
    for (first, last, value) in nets {
        close_until(&mut open, &mut out, Some(first));
        if let Some(top) = open.last_mut() {
            if top.0 == last {
                // The same prefix again (the later line wins), or a prefix
                // ending with the open one: that one's value is never seen
                // again, so it can simply be replaced.
                top.1 = value;
                emit(&mut out, first, Some(value));
                continue;
            }
        }
        emit(&mut out, first, Some(value));
        open.push((last, value));
    }
    close_until(&mut open, &mut out, None);
    out
}

#[cfg(test)]
mod tests;
