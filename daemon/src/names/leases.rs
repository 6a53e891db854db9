//! dnsmasq's lease file (`/tmp/dhcp.leases` on OpenWrt): names devices.
//! Line form: `<expiry> <mac> <ip> <hostname|*> <client-id|*>`.

use crate::hash::HashMap;
use std::net::IpAddr;

use crate::mac::Mac;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub mac: Mac,
    pub ip: IpAddr,
    pub hostname: Option<String>,
}

/// Lease files are small; a cap keeps a broken one from costing memory.
pub const MAX_LEASES: usize = 4096;

/// Parses what it can; malformed lines (and DHCPv6 lines, which carry a DUID
/// instead of a MAC) are skipped and counted.
pub fn parse(text: &str) -> (Vec<Lease>, usize) {
    let mut out = Vec::new();
    let mut bad = 0;
    for line in text.lines() {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.is_empty() || f[0] == "duid" {
            continue;
        }
        let parsed = (f.len() >= 4)
            .then(|| Some((f[1].parse::<Mac>().ok()?, f[2].parse::<IpAddr>().ok()?)))
            .flatten();
        match parsed {
            Some((mac, ip)) if out.len() < MAX_LEASES => {
                let hostname = (f[3] != "*" && is_printable(f[3])).then(|| f[3].to_string());
                out.push(Lease { mac, ip, hostname });
            }
            _ => bad += 1,
        }
    }
    (out, bad)
}

fn is_printable(s: &str) -> bool {
    s.len() <= 63 && s.bytes().all(|b| b.is_ascii_graphic())
}

/// MAC → host name, for lookups.
pub fn names(leases: &[Lease]) -> HashMap<Mac, String> {
    leases.iter().filter_map(|l| Some((l.mac, l.hostname.clone()?))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dnsmasq_lines() {
        let text = "1795382043 aa:bb:cc:dd:ee:ff 192.168.1.23 redmi-note 01:aa:bb:cc:dd:ee:ff\n\
                    1795382043 aa:bb:cc:dd:ee:01 192.168.1.24 * *\n\
                    duid 00:01:00:01:2c:2f:aa:bb:cc:dd:ee:ff\n\
                    garbage line\n";
        let (l, bad) = parse(text);
        assert_eq!(bad, 1);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].hostname.as_deref(), Some("redmi-note"));
        assert_eq!(l[1].hostname, None);
        assert_eq!(names(&l).len(), 1);
    }
}
