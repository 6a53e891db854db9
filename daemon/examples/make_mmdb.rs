//! Writes the test geoip databases for the lab:
//! `make_mmdb DIR` creates `DIR/country.mmdb` and `DIR/asn.mmdb`
//! (203.0.113.0/24 → CN / AS4808, 198.51.100.0/24 → US / AS64500,
//! 2001:db8:bad::/48 → CN / AS4808; see `leash::policy::geoip::mmdb_writer`).

use std::path::PathBuf;

use leash::policy::geoip::mmdb_writer::{test_asn_db, test_country_db};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir: PathBuf = std::env::args_os().nth(1).ok_or("usage: make_mmdb DIR")?.into();
    std::fs::create_dir_all(&dir)?;
    for (name, bytes) in [("country.mmdb", test_country_db()?), ("asn.mmdb", test_asn_db()?)] {
        let path = dir.join(name);
        std::fs::write(&path, bytes)?;
        println!("{}", path.display());
    }
    Ok(())
}
