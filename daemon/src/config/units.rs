//! Durations (`1h30m`) and byte sizes (`50MB`, `1.5GiB`) as written in the
//! configuration.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadUnit {
    #[error("not a duration (want e.g. 0, 30s, 15m, 1h, 7d, 1h30m): {0:?}")]
    Duration(String),
    #[error("not a size (want e.g. 1024, 500kB, 50MB, 1.5GB, 64KiB): {0:?}")]
    Size(String),
    #[error("too large: {0:?}")]
    Overflow(String),
}

/// Longest accepted duration (about 100 years): large enough for "never",
/// small enough that `Instant + Duration` elsewhere cannot overflow.
pub const MAX_DURATION_SECS: u64 = 100 * 365 * 86_400;

/// Parses `0`, `30s`, `15m`, `1h`, `7d` and sums like `1h30m` or `1d12h`.
/// A bare number is seconds (UCI has no integers). Units must come in
/// descending order and at most once each, so `1m1h` is rejected as a
/// probable typo rather than silently summed.
pub fn parse_duration(s: &str) -> Result<Duration, BadUnit> {
    let bad = || BadUnit::Duration(s.to_string());
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        let n = t.parse::<u64>().map_err(|_| BadUnit::Overflow(s.to_string()))?;
        return duration_secs(n).ok_or_else(|| BadUnit::Overflow(s.to_string()));
    }
    let mut total: u64 = 0;
    let mut rest = t;
    // Index into UNITS of the last unit seen; the next must be smaller.
    let mut last: Option<usize> = None;
    const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| BadUnit::Overflow(s.to_string()))?;
        let unit = rest[digits..].chars().next().ok_or_else(bad)?;
        let idx = UNITS.iter().position(|&(c, _)| c == unit).ok_or_else(bad)?;
        if last.is_some_and(|l| idx <= l) {
            return Err(bad());
        }
        last = Some(idx);
        let part = n.checked_mul(UNITS[idx].1).ok_or_else(|| BadUnit::Overflow(s.to_string()))?;
        total = total.checked_add(part).ok_or_else(|| BadUnit::Overflow(s.to_string()))?;
        rest = &rest[digits + unit.len_utf8()..];
    }
    duration_secs(total).ok_or_else(|| BadUnit::Overflow(s.to_string()))
}

/// Seconds as a `Duration`, `None` above `MAX_DURATION_SECS`.
pub fn duration_secs(n: u64) -> Option<Duration> {
    (n <= MAX_DURATION_SECS).then(|| Duration::from_secs(n))
}

/// Seconds as `parse_duration` reads them back: `15m`, `1h30m`, `2d`, `0s`.
pub fn format_duration(secs: u64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = secs;
    for (c, n) in [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)] {
        if rest >= n {
            out.push_str(&format!("{}{c}", rest / n));
            rest %= n;
        }
    }
    out
}

/// Parses a byte count: `1024`, `500kB`, `50MB`, `1.5GB` (decimal, 1000^n)
/// or `64KiB`, `1.5MiB` (binary, 1024^n). `B` and `KB` are accepted too.
/// A fraction must come out as whole bytes.
pub fn parse_size(s: &str) -> Result<u64, BadUnit> {
    let bad = || BadUnit::Size(s.to_string());
    let over = || BadUnit::Overflow(s.to_string());
    let t = s.trim();
    let num_len = t.bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
    let (num, unit) = t.split_at(num_len);
    let mult: u64 = match unit.trim_start() {
        "" | "B" => 1,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return Err(bad()),
    };
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if int.is_empty() || frac.contains('.') || (num.contains('.') && frac.is_empty()) {
        return Err(bad());
    }
    let whole = int.parse::<u64>().map_err(|_| over())?.checked_mul(mult).ok_or_else(over)?;
    if frac.is_empty() {
        return Ok(whole);
    }
    // Exact arithmetic: frac/10^len * mult must be an integer.
    if frac.len() > 18 {
        return Err(bad());
    }
    let f: u128 = frac.parse().map_err(|_| bad())?;
    let scale = 10u128.pow(frac.len() as u32);
    let num = f * mult as u128;
    if num % scale != 0 {
        return Err(BadUnit::Size(format!("{s} (not a whole number of bytes)")));
    }
    let part = u64::try_from(num / scale).map_err(|_| over())?;
    whole.checked_add(part).ok_or_else(over)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> u64 {
        parse_duration(s).unwrap().as_secs()
    }

    #[test]
    fn durations_format_as_they_parse() {
        for (secs, text) in [(0, "0s"), (2, "2s"), (900, "15m"), (5400, "1h30m"), (86_400 + 61, "1d1m1s")] {
            assert_eq!(format_duration(secs), text);
            assert_eq!(d(text), secs);
        }
    }

    #[test]
    fn durations() {
        assert_eq!(d("0"), 0);
        assert_eq!(d("30s"), 30);
        assert_eq!(d("15m"), 900);
        assert_eq!(d("1h"), 3600);
        assert_eq!(d("7d"), 604_800);
        assert_eq!(d("1h30m"), 5400);
        assert_eq!(d("1d2h3m4s"), 93_784);
        assert_eq!(d("3600"), 3600);
        assert_eq!(d(" 24h "), 86_400);
        assert_eq!(d("36500d"), MAX_DURATION_SECS);
    }

    #[test]
    fn bad_durations() {
        for s in
            ["", "h", "1x", "1h1h", "1m1h", "1.5h", "-1h", "1 h", "1hh", "99999999999999999999s", "213503982334602d", "36501d"]
        {
            assert!(parse_duration(s).is_err(), "{s}");
        }
        assert!(matches!(parse_duration("99999999999999999999"), Err(BadUnit::Overflow(_))));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("0").unwrap(), 0);
        assert_eq!(parse_size("10B").unwrap(), 10);
        assert_eq!(parse_size("500kB").unwrap(), 500_000);
        assert_eq!(parse_size("50MB").unwrap(), 50_000_000);
        assert_eq!(parse_size("1.5GB").unwrap(), 1_500_000_000);
        assert_eq!(parse_size("64KiB").unwrap(), 65_536);
        assert_eq!(parse_size("1.5MiB").unwrap(), 1_572_864);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("50 MB").unwrap(), 50_000_000);
        assert_eq!(parse_size("0.5kB").unwrap(), 500);
    }

    #[test]
    fn bad_sizes() {
        for s in ["", "MB", "1.5", "1.5B", "1..5MB", "1.MB", ".5MB", "5mb", "5 M", "-1", "1.0001kB", "99999999999TB", "1e3"] {
            assert!(parse_size(s).is_err(), "{s}");
        }
    }
}
