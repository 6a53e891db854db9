//! Who made a device, from its MAC address: an IEEE OUI registry file when
//! the router has one (`oui.txt` of Debian's ieee-data or hwdata; none ships
//! on OpenWrt by default), and in any case whether the address is a
//! randomized private one, as phones use per network.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use crate::mac::Mac;

pub const RANDOM: &str = "(private random address)";

/// Where registry files are looked for, first found wins.
pub const OUI_FILES: &[&str] = &["/usr/share/leash/oui.txt", "/usr/share/ieee-data/oui.txt", "/usr/share/hwdata/oui.txt"];

/// Lookups are cached per OUI; a router sees few makers.
const MAX_CACHED: usize = 1024;

/// The vendor of `oui` in the registry's text form, lines like
/// `28-6F-B9   (hex)\t\tNokia Shanghai Bell Co., Ltd.`.
pub fn find(reader: impl BufRead, oui: [u8; 3]) -> Option<String> {
    let want = format!("{:02X}-{:02X}-{:02X}", oui[0], oui[1], oui[2]);
    for line in reader.lines() {
        let Ok(line) = line else { return None };
        let Some(rest) = line.strip_prefix(&want) else { continue };
        let Some(name) = rest.trim_start().strip_prefix("(hex)") else { continue };
        let name = name.trim();
        if !name.is_empty() {
            return Some(name.chars().filter(|c| !c.is_control()).take(64).collect());
        }
    }
    None
}

#[derive(Debug, Default)]
pub struct Vendors {
    file: Option<PathBuf>,
    cache: HashMap<[u8; 3], Option<String>>,
}

impl Vendors {
    pub fn new() -> Vendors {
        let file = OUI_FILES.iter().map(Path::new).find(|p| p.is_file()).map(Path::to_path_buf);
        Vendors { file, cache: HashMap::new() }
    }

    pub fn of(&mut self, mac: Mac) -> Option<String> {
        // Locally administered: made up by the device, no maker to find.
        if mac.0[0] & 0x02 != 0 {
            return Some(RANDOM.to_string());
        }
        let oui = [mac.0[0], mac.0[1], mac.0[2]];
        if let Some(v) = self.cache.get(&oui) {
            return v.clone();
        }
        let found = self.file.as_ref().and_then(|p| std::fs::File::open(p).ok()).and_then(|f| find(std::io::BufReader::new(f), oui));
        if self.cache.len() >= MAX_CACHED {
            self.cache.clear();
        }
        self.cache.insert(oui, found.clone());
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "OUI/MA-L\t\t\tOrganization\ncompany_id\t\t\tOrganization\n\t\t\t\tAddress\n\n\
        28-6F-B9   (hex)\t\tNokia Shanghai Bell Co., Ltd.\n286FB9     (base 16)\t\tNokia Shanghai Bell Co., Ltd.\n\n\
        00-1A-11   (hex)\t\tGoogle, Inc.\n001A11     (base 16)\t\tGoogle, Inc.\n";

    #[test]
    fn finds_makers_in_the_registry_text() {
        assert_eq!(find(SAMPLE.as_bytes(), [0x00, 0x1a, 0x11]).as_deref(), Some("Google, Inc."));
        assert_eq!(find(SAMPLE.as_bytes(), [0x28, 0x6f, 0xb9]).as_deref(), Some("Nokia Shanghai Bell Co., Ltd."));
        assert_eq!(find(SAMPLE.as_bytes(), [0x00, 0x00, 0x01]), None);
        assert_eq!(find(&b"\xff\xfe garbage"[..], [0, 0, 1]), None);
    }

    #[test]
    fn random_addresses_are_named_so() {
        let mut v = Vendors { file: None, cache: HashMap::new() };
        assert_eq!(v.of("02:00:00:00:07:01".parse().unwrap()).as_deref(), Some(RANDOM));
        assert_eq!(v.of("00:1a:11:00:00:01".parse().unwrap()), None);
    }
}
