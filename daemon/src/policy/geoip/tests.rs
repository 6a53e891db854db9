use std::path::PathBuf;

use super::mmdb_writer::{test_asn_db, test_country_db, Value, Writer};
use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|_| panic!("{s}"))
}

/// A scratch directory per test, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("leash-geoip-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("temp dir");
        Dir(d)
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).expect("write");
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn open(country: Option<PathBuf>, asn: Option<PathBuf>) -> Result<GeoIp, GeoipError> {
    GeoIp::open(&GeoipConfig { country_db: country, asn_db: asn })
}

fn mmdbs(dir: &Dir) -> GeoIp {
    let c = dir.file("country.mmdb", &test_country_db().expect("country db"));
    let a = dir.file("asn.mmdb", &test_asn_db().expect("asn db"));
    open(Some(c), Some(a)).expect("opens")
}

fn cc(s: &str) -> Option<[u8; 2]> {
    country_code(s)
}

#[test]
fn mmdb_lookups_v4_v6_and_mapped() {
    let dir = Dir::new("mmdb");
    let g = mmdbs(&dir);
    assert!(!g.is_none());
    let cn = GeoInfo { country: cc("CN"), asn: Some(4808), as_org: Some("China Unicom Beijing Province Network".into()) };
    assert_eq!(g.lookup(ip("203.0.113.7")), cn);
    assert_eq!(g.lookup(ip("::ffff:203.0.113.7")), cn);
    assert_eq!(g.lookup(ip("2001:db8:bad::1")), cn);
    assert_eq!(
        g.lookup(ip("198.51.100.200")),
        GeoInfo { country: cc("US"), asn: Some(64500), as_org: Some("Documentation AS".into()) }
    );
    // Nested networks: the narrower one wins.
    assert_eq!(g.lookup(ip("192.0.2.1")).country, cc("DE"));
    assert_eq!(g.lookup(ip("192.0.2.200")).country, cc("FR"));
    // ASN without organization.
    assert_eq!(g.lookup(ip("192.0.2.1")), GeoInfo { country: cc("DE"), asn: Some(64496), as_org: None });
    // Only a registered country.
    assert_eq!(g.lookup(ip("100.64.1.1")), GeoInfo { country: cc("NL"), asn: None, as_org: None });
    assert_eq!(g.lookup(ip("2001:db8:1::5")).country, cc("US"));
    // No data.
    for a in ["8.8.8.8", "0.0.0.0", "255.255.255.255", "2001:db8:bae::1", "::", "::1", "ffff::1", "::ffff:8.8.8.8"] {
        assert_eq!(g.lookup(ip(a)), GeoInfo::default(), "{a}");
    }
}

#[test]
fn only_one_database_configured() {
    let dir = Dir::new("one");
    let a = dir.file("asn.mmdb", &test_asn_db().expect("asn db"));
    let g = open(None, Some(a)).expect("opens");
    assert_eq!(g.lookup(ip("203.0.113.7")).country, None);
    assert_eq!(g.lookup(ip("203.0.113.7")).asn, Some(4808));
    // An ASN database given as country database yields no countries, not errors.
    let a = dir.file("asn2.mmdb", &test_asn_db().expect("asn db"));
    let g = open(Some(a), None).expect("opens");
    assert_eq!(g.lookup(ip("203.0.113.7")), GeoInfo::default());
    assert!(GeoIp::none().is_none());
    assert_eq!(GeoIp::none().lookup(ip("203.0.113.7")), GeoInfo::default());
    assert!(open(None, None).expect("nothing to open").is_none());
}

#[test]
fn bad_mmdb_is_a_clean_error_naming_the_file() {
    let dir = Dir::new("bad");
    let good = test_country_db().expect("country db");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty.mmdb", vec![]),
        ("text.mmdb", b"203.0.113.0/24 CN\n".to_vec()),
        ("truncated.mmdb", good[..good.len() / 2].to_vec()),
        // Marker intact, metadata cut off.
        ("nometa.mmdb", good[..good.len() - 40].to_vec()),
    ];
    for (name, bytes) in cases {
        let p = dir.file(name, &bytes);
        match open(Some(p.clone()), None) {
            Err(e @ GeoipError::Mmdb { .. }) => assert!(e.to_string().contains(name), "{e}"),
            Err(e @ GeoipError::Read { .. }) if bytes.is_empty() => assert!(e.to_string().contains(name), "{e}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    let missing = dir.0.join("missing.mmdb");
    let e = open(None, Some(missing)).expect_err("missing file");
    assert!(matches!(e, GeoipError::Read { .. }) && e.to_string().contains("missing.mmdb"), "{e}");
    let e = open(Some(dir.0.join("missing.txt")), None).expect_err("missing list");
    assert!(e.to_string().contains("missing.txt"), "{e}");
}

#[test]
fn corrupt_records_do_not_panic() {
    // A tree whose data pointer lands in the middle of a string.
    let dir = Dir::new("records");
    let mut bytes = test_asn_db().expect("asn db");
    let data_start = bytes.windows(16).position(|w| w == [0; 16]).expect("separator") + 16;
    for b in &mut bytes[data_start..data_start + 8] {
        *b = 0xff;
    }
    let p = dir.file("damaged.mmdb", &bytes);
    if let Ok(g) = open(None, Some(p)) {
        for a in ["203.0.113.7", "198.51.100.1", "192.0.2.1", "2001:db8:bad::1"] {
            let _ = g.lookup(ip(a));
        }
    }
}

#[test]
fn cidr_lists() {
    let dir = Dir::new("lists");
    let c = dir.file(
        "country.txt",
        b"# country list\n\
          203.0.113.0/24 CN\n\
          198.51.100.0/24,us\n\
          10.0.0.0/8\tDE   # trailing comment\n\
          10.1.0.0/16 FR\n\
          10.1.2.0/24 NL\n\
          10.1.2.0/24 BE\n\
          2001:db8:bad::/48 CN\n\
          2001:db8::/32 US\n\
          \n\
          not a line\n\
          203.0.113.0/24 CHN\n\
          300.0.0.0/8 CN\n",
    );
    let a = dir.file("asn.csv", b"203.0.113.0/24,AS4808\n198.51.100.0/24 64500\n2001:db8:bad::/48 as4808\n192.0.2.0/24 ASX\n");
    let g = open(Some(c), Some(a)).expect("opens");
    let look = |s: &str| {
        let i = g.lookup(ip(s));
        (i.country.map(|c| String::from_utf8_lossy(&c).into_owned()), i.asn)
    };
    let some = |c: &str, a: Option<u32>| (Some(c.to_string()), a);
    assert_eq!(look("203.0.113.7"), some("CN", Some(4808)));
    assert_eq!(look("::ffff:203.0.113.7"), some("CN", Some(4808)));
    assert_eq!(look("198.51.100.255"), some("US", Some(64500)));
    assert_eq!(look("10.0.0.1"), some("DE", None));
    assert_eq!(look("10.1.0.1"), some("FR", None));
    // The same prefix twice: the later line wins.
    assert_eq!(look("10.1.2.3"), some("BE", None));
    assert_eq!(look("10.1.3.0"), some("FR", None));
    assert_eq!(look("10.2.0.0"), some("DE", None));
    assert_eq!(look("10.255.255.255"), some("DE", None));
    assert_eq!(look("11.0.0.0"), (None, None));
    assert_eq!(look("2001:db8:bad::1"), some("CN", Some(4808)));
    assert_eq!(look("2001:db8:1::1"), some("US", None));
    assert_eq!(look("2001:db9::1"), (None, None));
    assert_eq!(look("192.0.2.1"), (None, None));

    // A file with no readable line is the wrong file.
    let junk = dir.file("junk.txt", b"hello\nworld\n");
    let e = open(Some(junk), None).expect_err("junk");
    assert!(matches!(e, GeoipError::NoEntries { bad_lines: 2, .. }) && e.to_string().contains("junk.txt"), "{e}");
    // An empty one is just empty.
    let empty = dir.file("empty.txt", b"# nothing yet\n");
    assert_eq!(open(Some(empty), None).expect("empty list").lookup(ip("203.0.113.7")), GeoInfo::default());
}

#[test]
fn cidr_list_bad_lines_are_counted() {
    let p = parse_cidr_list(
        "203.0.113.0/24 CN\nbad\n1.2.3.0/24 CN extra\n1.2.3.0/24\n::/0 C1\n2001:db8::/32 cn\n",
        parse_country,
    );
    assert_eq!(p.entries.len(), 2);
    assert_eq!(p.bad_lines, 4);
    assert_eq!(p.first_bad, Some((2, "bad".to_string())));
    for (s, want) in [("4808", Some(4808)), ("AS4808", Some(4808)), ("as1", Some(1)), ("AS", None), ("-1", None), ("4294967296", None)] {
        assert_eq!(parse_asn(s), want, "{s}");
    }
}

#[test]
fn whole_space_and_edges_of_the_address_space() {
    let r = Ranges::build(vec![
        ("0.0.0.0/0".parse().expect("net"), 1u32),
        ("255.255.255.0/24".parse().expect("net"), 2),
        ("0.0.0.0/8".parse().expect("net"), 3),
        ("::/0".parse().expect("net"), 4),
        ("ffff::/16".parse().expect("net"), 5),
    ]);
    assert_eq!(r.get(ip("0.0.0.1")), Some(3));
    assert_eq!(r.get(ip("1.0.0.0")), Some(1));
    assert_eq!(r.get(ip("255.255.254.255")), Some(1));
    assert_eq!(r.get(ip("255.255.255.255")), Some(2));
    assert_eq!(r.get(ip("::")), Some(4));
    assert_eq!(r.get(ip("ffff:ffff::1")), Some(5));
    assert_eq!(r.get(ip("fffe::1")), Some(4));
}

/// Longest-prefix match by brute force, against the flattened ranges.
#[test]
fn ranges_agree_with_naive_longest_prefix_match() {
    let mut seed = 11u64;
    let mut next = |n: u64| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    for round in 0..100 {
        // Small prefixes inside 10.0.0.0/16 so that they overlap a lot.
        let nets: Vec<(Cidr, u32)> = (0..next(30))
            .filter_map(|i| {
                let len = 16 + next(17) as u8;
                let addr = IpAddr::from([10, 0, next(256) as u8, next(256) as u8]);
                Cidr::new(addr, len).map(|c| (c, i as u32))
            })
            .collect();
        let r = Ranges::build(nets.clone());
        for _ in 0..300 {
            let a = IpAddr::from([10, 0, next(256) as u8, next(256) as u8]);
            let naive = nets
                .iter()
                .enumerate()
                .filter(|(_, (c, _))| c.contains(a))
                .max_by_key(|(i, (c, _))| (c.len(), *i))
                .map(|(_, (_, v))| *v);
            assert_eq!(r.get(a), naive, "round {round}: {a} in {nets:?}");
        }
    }
}

#[test]
fn writer_refuses_what_it_cannot_write() {
    let mut w = Writer::new("t");
    assert_eq!(w.insert("::/0".parse().expect("net"), &Value::Bool(true)), Err(super::mmdb_writer::WriteError::WholeSpace));
    assert!(w.insert("::/1".parse().expect("net"), &Value::Bool(true)).is_ok());
    assert!(w.to_bytes().is_ok());
}

/// The reader's own full check (tree, data section, metadata) accepts what
/// the writer produces.
#[test]
fn written_databases_pass_the_readers_verifier() {
    for bytes in [test_country_db(), test_asn_db()] {
        let bytes = bytes.expect("written");
        let reader = maxminddb::Reader::from_source(bytes).expect("opens");
        reader.verify().expect("verifies");
        assert_eq!(reader.metadata().record_size, 24);
        assert_eq!(reader.metadata().ip_version, 6);
    }
}
