//! The `nft -f` script that replaces leash's table in one transaction.

use std::fmt::Write;

use super::*;

/// How DNS answers to LAN devices reach leash (SPEC §2, `dns_hold`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsPath {
    /// A copy of each answer to this NFLOG group; the packet goes on.
    Snoop { group: u16 },
    /// Each answer is held in this NFQUEUE until leash lets it go;
    /// `bypass`: it passes when nobody reads the queue.
    Hold { queue: u16 },
    /// Another firewall queues the answers: no DNS rule here.
    External,
}

/// What the table is built from, besides its elements.
#[derive(Debug, Clone, Copy)]
pub struct Layout<'a> {
    pub table: &'a str,
    pub lan: &'a [String],
    pub dns: DnsPath,
}

/// Builds the script: create the table (so that the delete cannot fail),
/// delete it, and define it whole with `elements` in force from the first
/// packet, each with its timeout (`None`: until removed), so that a rebuild
/// re-installs blocks with what is left of their time. `nft -f` applies all
/// of it as one atomic batch, whatever state the kernel was left in.
///
/// Chains hook at `filter - 10`, before fw4's filter chains; a drop in any
/// base chain is final, so fw4's accepts cannot undo it, and leash never
/// touches fw4's table.
pub fn ruleset(layout: &Layout, elements: &[(Elem, Option<Duration>)]) -> String {
    let Layout { table, lan, dns } = *layout;
    // The rule that hands an answer to leash: the verdict (queue) or the
    // statement (log) that ends each DNS rule.
    let to_leash = match dns {
        DnsPath::Snoop { group } => Some(format!("log group {group} comment \"DNS answers to leash\"")),
        DnsPath::Hold { queue } => Some(format!("queue num {queue} bypass comment \"DNS answers held until leash judged them\"")),
        DnsPath::External => None,
    };
    let lan_set = lan.iter().map(|l| format!("\"{}\"", escape(l))).collect::<Vec<_>>().join(", ");
    let mut s = String::new();
    let _ = writeln!(s, "table inet {table} {{}}");
    let _ = writeln!(s, "delete table inet {table}");
    let _ = writeln!(s, "table inet {table} {{");
    for (name, ty, comment) in [
        (SET_QUARANTINE_MAC, "ether_addr", "quarantined devices: no internet"),
        (SET_QUARANTINE_V4, "ipv4_addr", "addresses of quarantined devices: no inbound from the internet"),
        (SET_QUARANTINE_V6, "ipv6_addr", "addresses of quarantined devices: no inbound from the internet"),
        (SET_BLOCK_V4, "ether_addr . ipv4_addr", "device . destination pairs that are blocked"),
        (SET_BLOCK_V6, "ether_addr . ipv6_addr", "device . destination pairs that are blocked"),
    ] {
        let _ = writeln!(s, "\tset {name} {{");
        let _ = writeln!(s, "\t\ttype {ty}; flags timeout; comment \"{comment}\";");
        let items: Vec<String> = elements
            .iter()
            .filter(|(e, _)| e.set() == name)
            .map(|(e, t)| match t {
                Some(t) => format!("{} timeout {}", e.nft_key(), nft_duration(*t)),
                None => e.nft_key(),
            })
            .collect();
        if !items.is_empty() {
            let _ = writeln!(s, "\t\telements = {{ {} }}", items.join(", "));
        }
        let _ = writeln!(s, "\t}}");
    }
    let _ = writeln!(s, "\tchain forward {{");
    let _ = writeln!(s, "\t\ttype filter hook forward priority filter - 10; policy accept;");
    // leash's own ct expression: conntrack reports flows even on a router
    // without fw4 (the kernel tracks nothing until some rule uses it).
    let _ = writeln!(s, "\t\tct state new counter comment \"new flows: conntrack reports them to leash\"");
    if !lan.is_empty() {
        let _ = writeln!(s, "\t\tiifname {{ {lan_set} }} oifname != {{ {lan_set} }} jump lan_out");
        let _ = writeln!(s, "\t\tiifname != {{ {lan_set} }} oifname {{ {lan_set} }} jump lan_in");
    }
    let _ = writeln!(s, "\t}}");
    let _ = writeln!(s, "\tchain lan_out {{");
    let _ = writeln!(s, "\t\tether saddr @{SET_QUARANTINE_MAC} counter drop comment \"quarantined device\"");
    let _ = writeln!(s, "\t\tether saddr . ip daddr @{SET_BLOCK_V4} counter drop comment \"blocked destination\"");
    let _ = writeln!(s, "\t\tether saddr . ip6 daddr @{SET_BLOCK_V6} counter drop comment \"blocked destination\"");
    let _ = writeln!(s, "\t}}");
    let _ = writeln!(s, "\tchain lan_in {{");
    let _ = writeln!(s, "\t\tip daddr @{SET_QUARANTINE_V4} counter drop comment \"inbound to a quarantined device\"");
    let _ = writeln!(s, "\t\tip6 daddr @{SET_QUARANTINE_V6} counter drop comment \"inbound to a quarantined device\"");
    // Answers of outside resolvers a device asked directly (8.8.8.8, ...).
    if let Some(to) = &to_leash {
        let _ = writeln!(s, "\t\tudp sport 53 ct direction reply {to}");
        let _ = writeln!(s, "\t\ttcp sport 53 ct direction reply {to}");
    }
    let _ = writeln!(s, "\t}}");
    // Answers of the router's own resolver (dnsmasq) to LAN devices.
    let _ = writeln!(s, "\tchain dns_out {{");
    let _ = writeln!(s, "\t\ttype filter hook output priority filter - 10; policy accept;");
    if let (false, Some(to)) = (lan.is_empty(), &to_leash) {
        let _ = writeln!(s, "\t\toifname {{ {lan_set} }} udp sport 53 ct direction reply {to}");
        let _ = writeln!(s, "\t\toifname {{ {lan_set} }} tcp sport 53 ct direction reply {to}");
    }
    let _ = writeln!(s, "\t}}");
    let _ = writeln!(s, "}}");
    s
}

/// A transaction that adds a table with one `queue` rule and deletes it
/// again: it commits only where the kernel has nft `queue`
/// (kmod-nft-queue), and leaves nothing behind either way.
pub fn queue_probe(table: &str, queue: u16) -> String {
    let t = format!("{table}_probe");
    format!("table inet {t} {{\n\tchain c {{\n\t\tudp sport 53 queue num {queue} bypass\n\t}}\n}}\ndelete table inet {t}\n")
}

/// A timeout as nft reads it. Milliseconds unless whole seconds; never 0,
/// which nft would not take as "expires now".
fn nft_duration(t: Duration) -> String {
    let ms = t.as_millis().max(1);
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Interface names come from the validated config, but a quote must never
/// end the string early.
fn escape(s: &str) -> String {
    s.chars().filter(|c| *c != '"' && *c != '\\' && !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_script() {
        let mac: Mac = "aa:bb:cc:dd:ee:ff".parse().unwrap();
        let lan = ["br-lan".to_string(), "wlan0".to_string()];
        let s = ruleset(
            &Layout { table: "leash", lan: &lan, dns: DnsPath::Snoop { group: 5335 } },
            &[
                (Elem::QuarantineMac(mac), None),
                (Elem::QuarantineAddr("192.168.1.23".parse().unwrap()), None),
                (Elem::QuarantineAddr("2001:db8::23".parse().unwrap()), None),
                (Elem::Block(mac, "203.0.113.7".parse().unwrap()), Some(Duration::from_secs(3600))),
                (Elem::Block(mac, "203.0.113.8".parse().unwrap()), Some(Duration::from_millis(1500))),
                (Elem::Block(mac, "2001:db8::7".parse().unwrap()), None),
            ],
        );
        let want = r#"table inet leash {}
delete table inet leash
table inet leash {
	set quarantine_mac {
		type ether_addr; flags timeout; comment "quarantined devices: no internet";
		elements = { aa:bb:cc:dd:ee:ff }
	}
	set quarantine_v4 {
		type ipv4_addr; flags timeout; comment "addresses of quarantined devices: no inbound from the internet";
		elements = { 192.168.1.23 }
	}
	set quarantine_v6 {
		type ipv6_addr; flags timeout; comment "addresses of quarantined devices: no inbound from the internet";
		elements = { 2001:db8::23 }
	}
	set block_v4 {
		type ether_addr . ipv4_addr; flags timeout; comment "device . destination pairs that are blocked";
		elements = { aa:bb:cc:dd:ee:ff . 203.0.113.7 timeout 3600s, aa:bb:cc:dd:ee:ff . 203.0.113.8 timeout 1500ms }
	}
	set block_v6 {
		type ether_addr . ipv6_addr; flags timeout; comment "device . destination pairs that are blocked";
		elements = { aa:bb:cc:dd:ee:ff . 2001:db8::7 }
	}
	chain forward {
		type filter hook forward priority filter - 10; policy accept;
		ct state new counter comment "new flows: conntrack reports them to leash"
		iifname { "br-lan", "wlan0" } oifname != { "br-lan", "wlan0" } jump lan_out
		iifname != { "br-lan", "wlan0" } oifname { "br-lan", "wlan0" } jump lan_in
	}
	chain lan_out {
		ether saddr @quarantine_mac counter drop comment "quarantined device"
		ether saddr . ip daddr @block_v4 counter drop comment "blocked destination"
		ether saddr . ip6 daddr @block_v6 counter drop comment "blocked destination"
	}
	chain lan_in {
		ip daddr @quarantine_v4 counter drop comment "inbound to a quarantined device"
		ip6 daddr @quarantine_v6 counter drop comment "inbound to a quarantined device"
		udp sport 53 ct direction reply log group 5335 comment "DNS answers to leash"
		tcp sport 53 ct direction reply log group 5335 comment "DNS answers to leash"
	}
	chain dns_out {
		type filter hook output priority filter - 10; policy accept;
		oifname { "br-lan", "wlan0" } udp sport 53 ct direction reply log group 5335 comment "DNS answers to leash"
		oifname { "br-lan", "wlan0" } tcp sport 53 ct direction reply log group 5335 comment "DNS answers to leash"
	}
}
"#;
        assert_eq!(s, want);
    }

    /// With `dns_hold`, the same table queues the answers instead of
    /// logging them (OpenWrt's kmod-nft-queue; this lab kernel has no nft
    /// queue, so the text is checked here and the lab queues with iptables).
    #[test]
    fn golden_hold_and_external() {
        let lan = ["br-lan".to_string()];
        let hold = ruleset(&Layout { table: "leash", lan: &lan, dns: DnsPath::Hold { queue: 5336 } }, &[]);
        let want_in = "\t\tudp sport 53 ct direction reply queue num 5336 bypass comment \"DNS answers held until leash judged them\"\n\t\ttcp sport 53 ct direction reply queue num 5336 bypass comment \"DNS answers held until leash judged them\"\n\t}\n\tchain dns_out {";
        assert!(hold.contains(want_in), "{hold}");
        let want_out = "\t\toifname { \"br-lan\" } udp sport 53 ct direction reply queue num 5336 bypass comment \"DNS answers held until leash judged them\"\n\t\toifname { \"br-lan\" } tcp sport 53 ct direction reply queue num 5336 bypass comment \"DNS answers held until leash judged them\"\n\t}\n}\n";
        assert!(hold.ends_with(want_out), "{hold}");
        assert!(!hold.contains("log group"));
        let ext = ruleset(&Layout { table: "leash", lan: &lan, dns: DnsPath::External }, &[]);
        assert!(!ext.contains("sport 53"), "{ext}");
        assert!(ext.contains("chain dns_out {\n\t\ttype filter hook output priority filter - 10; policy accept;\n\t}"), "{ext}");
    }

    #[test]
    fn elements_name_their_sets() {
        let mac: Mac = "aa:bb:cc:dd:ee:ff".parse().unwrap();
        let b = Elem::Block(mac, "2001:db8::1".parse().unwrap());
        assert_eq!(b.set(), SET_BLOCK_V6);
        assert_eq!(b.nft_key(), "aa:bb:cc:dd:ee:ff . 2001:db8::1");
        assert_eq!(escape("br\"-lan"), "br-lan");
        assert_eq!(nft_duration(Duration::from_secs(86400)), "86400s");
        assert_eq!(nft_duration(Duration::from_micros(10)), "1ms");
        assert_eq!(nft_duration(Duration::ZERO), "1ms");
    }
}
