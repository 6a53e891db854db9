//! The `nft -f` script that replaces leash's table in one transaction.

use std::fmt::Write;

use super::*;
use crate::policy::netset::NetSet;

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
    /// Some profile has `dns_bypass = "block"`: the sets and rules that
    /// redirect and cut its devices' DNS (none otherwise, so that a table
    /// without such a profile is the same as before the feature).
    pub bypass: Option<Bypass<'a>>,
}

/// The kernel side of `dns_bypass = "block"` (SPEC §3, §6).
#[derive(Debug, Clone, Copy)]
pub struct Bypass<'a> {
    /// The NFLOG group the cut attempts are logged to (`dns_nflog_group`,
    /// whatever path DNS answers take), with `BYPASS_PREFIX`.
    pub group: u16,
    /// DNS-over-HTTPS endpoints: the union of the block profiles'
    /// `dns_bypass_lists` addresses.
    pub doh: &'a NetSet,
}

/// The `log prefix` of packets cut for `dns_bypass`: leash reads them as
/// bypass attempts, never as DNS answers.
pub const BYPASS_PREFIX: &str = "leash-bypass";

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
    let Layout { table, lan, dns, bypass } = *layout;
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
    if let Some(b) = &bypass {
        bypass_sets(&mut s, b, elements);
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
    if bypass.is_some() {
        let _ = writeln!(s, "\t\tether saddr @{SET_BYPASS_MAC} meta l4proto {{ tcp, udp }} th dport 853 jump bypass_cut comment \"DNS over TLS or QUIC\"");
        let _ = writeln!(s, "\t\tether saddr @{SET_BYPASS_MAC} ip daddr @{SET_DOH_V4} meta l4proto {{ tcp, udp }} th dport 443 jump bypass_cut comment \"DNS-over-HTTPS endpoint\"");
        let _ = writeln!(s, "\t\tether saddr @{SET_BYPASS_MAC} ip6 daddr @{SET_DOH_V6} meta l4proto {{ tcp, udp }} th dport 443 jump bypass_cut comment \"DNS-over-HTTPS endpoint\"");
    }
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
    if let Some(b) = &bypass {
        bypass_chains(&mut s, b, lan, &lan_set);
    }
    let _ = writeln!(s, "}}");
    s
}

/// `bypass_mac` (with the elements given for it, untimed) and the DoH
/// endpoints as interval sets.
fn bypass_sets(s: &mut String, b: &Bypass, elements: &[(Elem, Option<Duration>)]) {
    let _ = writeln!(s, "\tset {SET_BYPASS_MAC} {{");
    let _ = writeln!(s, "\t\ttype ether_addr; comment \"devices whose DNS must go through the router's resolver\";");
    let macs: Vec<String> = elements.iter().filter(|(e, _)| e.set() == SET_BYPASS_MAC).map(|(e, _)| e.nft_key()).collect();
    if !macs.is_empty() {
        let _ = writeln!(s, "\t\telements = {{ {} }}", macs.join(", "));
    }
    let _ = writeln!(s, "\t}}");
    for (name, ty, v4) in [(SET_DOH_V4, "ipv4_addr", true), (SET_DOH_V6, "ipv6_addr", false)] {
        let _ = writeln!(s, "\tset {name} {{");
        let _ = writeln!(s, "\t\ttype {ty}; flags interval; auto-merge; comment \"DNS-over-HTTPS endpoints (dns_bypass_lists)\";");
        let items: Vec<String> = b
            .doh
            .ranges()
            .filter(|(first, _)| first.is_ipv4() == v4)
            .map(|(first, last)| if first == last { first.to_string() } else { format!("{first}-{last}") })
            .collect();
        if !items.is_empty() {
            let _ = writeln!(s, "\t\telements = {{ {} }}", items.join(", "));
        }
        let _ = writeln!(s, "\t}}");
    }
}

/// Where cut attempts end (logged to leash, at most 10 a second so that a
/// flood of them cannot crowd DNS answers out of the NFLOG queue), and the
/// nat chain that hands DNS meant for other resolvers to the router's own.
/// It runs before fw4's dstnat chain; the first nat verdict of a flow is
/// the one that stays.
fn bypass_chains(s: &mut String, b: &Bypass, lan: &[String], lan_set: &str) {
    let _ = writeln!(s, "\tchain bypass_cut {{");
    let _ = writeln!(s, "\t\tlimit rate 10/second burst 20 packets log prefix \"{BYPASS_PREFIX}\" group {} comment \"dns_bypass attempts to leash\"", b.group);
    let _ = writeln!(s, "\t\tcounter drop comment \"DNS around the router's resolver\"");
    let _ = writeln!(s, "\t}}");
    let _ = writeln!(s, "\tchain bypass_nat {{");
    let _ = writeln!(s, "\t\ttype nat hook prerouting priority dstnat - 10; policy accept;");
    if !lan.is_empty() {
        let _ = writeln!(s, "\t\tiifname {{ {lan_set} }} ether saddr @{SET_BYPASS_MAC} meta l4proto {{ tcp, udp }} th dport 53 fib daddr type != local counter redirect to :53 comment \"DNS to other resolvers: the router's answers\"");
    }
    let _ = writeln!(s, "\t}}");
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
            &Layout { table: "leash", lan: &lan, dns: DnsPath::Snoop { group: 5335 }, bypass: None },
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
        let hold = ruleset(&Layout { table: "leash", lan: &lan, dns: DnsPath::Hold { queue: 5336 }, bypass: None }, &[]);
        let want_in = "\t\tudp sport 53 ct direction reply queue num 5336 bypass comment \"DNS answers held until leash judged them\"\n\t\ttcp sport 53 ct direction reply queue num 5336 bypass comment \"DNS answers held until leash judged them\"\n\t}\n\tchain dns_out {";
        assert!(hold.contains(want_in), "{hold}");
        let want_out = "\t\toifname { \"br-lan\" } udp sport 53 ct direction reply queue num 5336 bypass comment \"DNS answers held until leash judged them\"\n\t\toifname { \"br-lan\" } tcp sport 53 ct direction reply queue num 5336 bypass comment \"DNS answers held until leash judged them\"\n\t}\n}\n";
        assert!(hold.ends_with(want_out), "{hold}");
        assert!(!hold.contains("log group"));
        let ext = ruleset(&Layout { table: "leash", lan: &lan, dns: DnsPath::External, bypass: None }, &[]);
        assert!(!ext.contains("sport 53"), "{ext}");
        assert!(ext.contains("chain dns_out {\n\t\ttype filter hook output priority filter - 10; policy accept;\n\t}"), "{ext}");
    }

    /// A profile with `dns_bypass = "block"` adds its sets and chains; the
    /// rest of the table is the same text as without.
    #[test]
    fn golden_bypass() {
        let mac: Mac = "aa:bb:cc:dd:ee:ff".parse().unwrap();
        let lan = ["br-lan".to_string()];
        let doh = NetSet::new(["1.1.1.1", "1.0.0.1", "8.8.8.0/24", "2606:4700:4700::1111"].iter().map(|c| c.parse().unwrap()).collect());
        let bypass = Some(Bypass { group: 5335, doh: &doh });
        let elements = [(Elem::BypassMac(mac), None), (Elem::Block(mac, "203.0.113.7".parse().unwrap()), None)];
        let with = ruleset(&Layout { table: "leash", lan: &lan, dns: DnsPath::Snoop { group: 5335 }, bypass }, &elements);
        let without = ruleset(&Layout { table: "leash", lan: &lan, dns: DnsPath::Snoop { group: 5335 }, bypass: None }, &elements);
        let sets = r#"	set bypass_mac {
		type ether_addr; comment "devices whose DNS must go through the router's resolver";
		elements = { aa:bb:cc:dd:ee:ff }
	}
	set doh_v4 {
		type ipv4_addr; flags interval; auto-merge; comment "DNS-over-HTTPS endpoints (dns_bypass_lists)";
		elements = { 1.0.0.1, 1.1.1.1, 8.8.8.0-8.8.8.255 }
	}
	set doh_v6 {
		type ipv6_addr; flags interval; auto-merge; comment "DNS-over-HTTPS endpoints (dns_bypass_lists)";
		elements = { 2606:4700:4700::1111 }
	}
"#;
        let cuts = r#"		ether saddr @bypass_mac meta l4proto { tcp, udp } th dport 853 jump bypass_cut comment "DNS over TLS or QUIC"
		ether saddr @bypass_mac ip daddr @doh_v4 meta l4proto { tcp, udp } th dport 443 jump bypass_cut comment "DNS-over-HTTPS endpoint"
		ether saddr @bypass_mac ip6 daddr @doh_v6 meta l4proto { tcp, udp } th dport 443 jump bypass_cut comment "DNS-over-HTTPS endpoint"
"#;
        let chains = r#"	chain bypass_cut {
		limit rate 10/second burst 20 packets log prefix "leash-bypass" group 5335 comment "dns_bypass attempts to leash"
		counter drop comment "DNS around the router's resolver"
	}
	chain bypass_nat {
		type nat hook prerouting priority dstnat - 10; policy accept;
		iifname { "br-lan" } ether saddr @bypass_mac meta l4proto { tcp, udp } th dport 53 fib daddr type != local counter redirect to :53 comment "DNS to other resolvers: the router's answers"
	}
"#;
        let lan_out_end = "\t\tether saddr . ip6 daddr @block_v6 counter drop comment \"blocked destination\"\n";
        let want = without
            .replacen("\tchain forward {\n", &format!("{sets}\tchain forward {{\n"), 1)
            .replacen(lan_out_end, &format!("{lan_out_end}{cuts}"), 1)
            .strip_suffix("}\n")
            .map(|t| format!("{t}{chains}}}\n"))
            .unwrap();
        assert_eq!(with, want);
        assert!(!without.contains("bypass"), "{without}");
        // No LAN interface: nothing to redirect from.
        let none = ruleset(&Layout { table: "leash", lan: &[], dns: DnsPath::External, bypass }, &[]);
        assert!(none.contains("\tchain bypass_nat {\n\t\ttype nat hook prerouting priority dstnat - 10; policy accept;\n\t}\n"), "{none}");
        assert!(none.contains("\tset doh_v6 {\n\t\ttype ipv6_addr; flags interval; auto-merge; comment \"DNS-over-HTTPS endpoints (dns_bypass_lists)\";\n\t\telements"));
    }

    #[test]
    fn elements_name_their_sets() {
        let mac: Mac = "aa:bb:cc:dd:ee:ff".parse().unwrap();
        let b = Elem::Block(mac, "2001:db8::1".parse().unwrap());
        assert_eq!(b.set(), SET_BLOCK_V6);
        assert_eq!(b.nft_key(), "aa:bb:cc:dd:ee:ff . 2001:db8::1");
        assert_eq!((Elem::BypassMac(mac).set(), Elem::BypassMac(mac).nft_key()), (SET_BYPASS_MAC, "aa:bb:cc:dd:ee:ff".to_string()));
        assert_eq!(escape("br\"-lan"), "br-lan");
        assert_eq!(nft_duration(Duration::from_secs(86400)), "86400s");
        assert_eq!(nft_duration(Duration::from_micros(10)), "1ms");
        assert_eq!(nft_duration(Duration::ZERO), "1ms");
    }
}
