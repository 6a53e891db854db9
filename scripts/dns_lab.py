#!/usr/bin/env python3
"""Captures real DNS answers for leash's tests (needs root).

Builds two network namespaces joined by a veth pair: a client and a
resolver running dnsmasq. Queries go over UDP and TCP, IPv4 and IPv6.
Replies are captured twice: as packets (`tcpdump -w` on the resolver's
veth) and as raw NFLOG netlink messages (an nft `log group 5335` rule in
each namespace, read by a plain netlink socket bound to the group: on the
resolver's output hook, and on the client's input hook, which adds the
hardware address).

    scripts/dns_lab.py capture OUTDIR   # pcap, nflog-*.hex, seeds
    scripts/dns_lab.py rust OUTDIR      # Rust constants on stdout
    scripts/dns_lab.py queue-capture OUTDIR  # nfqueue-*.hex (NFQUEUE instead of NFLOG)
    scripts/dns_lab.py queue-rust OUTDIR     # their Rust constants and fuzz seeds

The queue lab holds the replies in NFQUEUE 5336 instead (`iptables-nft
-j NFQUEUE`: this kernel has no nft `queue`), read by a listener that
writes each message and lets the packet go.

Every namespace and process is removed on exit, failure included.
"""

import os
import signal
import socket
import struct
import subprocess
import sys
import time

GROUP = 5335
QUEUE = 5336
NETLINK_NETFILTER = 12
CLI, RES = f"leash-dnscli-{os.getpid()}", f"leash-dnsres-{os.getpid()}"
RES4, RES6 = "10.53.0.1", "fd53::1"

DNSMASQ = [
    "dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces",
    f"--listen-address={RES4},{RES6}", "--log-queries", "--log-facility=-", "--local-ttl=600",
    "--address=/tracking.example.com/203.0.113.7",
    "--host-record=tracking.example.com,203.0.113.7",
    "--host-record=cdn.example.org,203.0.113.9",
    "--cname=alias.example.net,mid.example.net,120",
    "--cname=mid.example.net,cdn.example.org",
    "--address=/v6.example.com/2001:db8:bad::7",
    "--host-record=multi.example.com,198.51.100.1",
    "--host-record=multi.example.com,198.51.100.2",
    "--address=/nope.example.com/",
]

# (capture name, transport, server, qname, qtype, edns, query id)
QUERIES = [
    ("A_UDP4", "udp", RES4, "tracking.example.com", 1, False, 0x1001),
    ("AAAA_UDP4", "udp", RES4, "v6.example.com", 28, False, 0x1002),
    ("CNAME_UDP4", "udp", RES4, "Alias.Example.NET", 1, True, 0x1003),
    ("NXDOMAIN_UDP4", "udp", RES4, "nope.example.com", 1, False, 0x1004),
    ("A_TCP4", "tcp", RES4, "multi.example.com", 1, False, 0x1005),
    ("AAAA_UDP6", "udp", RES6, "v6.example.com", 28, False, 0x1006),
]


def sh(*args, check=True, stdin=None):
    r = subprocess.run(args, capture_output=True, text=True, input=stdin)
    if check and r.returncode:
        raise RuntimeError(f"{args}: {r.stderr}")
    return r


def nsx(ns, *args):
    return ["ip", "netns", "exec", ns, *args]


def nl_config(group, seq, attrs):
    body = struct.pack("!BBH", 0, 0, group) + attrs
    return struct.pack("=IHHII", 16 + len(body), (4 << 8) | 1, 0x05, seq, 0) + body


def nla(ty, value):
    raw = struct.pack("=HH", 4 + len(value), ty) + value
    return raw + b"\0" * (-len(raw) % 4)


def listen(group, out):
    """NFLOG listener: bind, copy whole packets, write each datagram as hex."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    s.bind((0, 0))
    for seq, attrs in enumerate([
        nla(1, b"\x01"),                                  # CFG_CMD BIND
        nla(2, struct.pack("!IBB", 0xFFFF, 2, 0))         # CFG_MODE packet, 0xffff
        + nla(5, struct.pack("!I", 1)),                   # CFG_QTHRESH 1: no batching
    ], 1):
        s.send(nl_config(group, seq, attrs))
        ack = s.recv(4096)
        errno = struct.unpack_from("=i", ack, 16)[0]
        if errno:
            sys.exit(f"NFLOG config failed: errno {-errno}")
    with open(out + ".ready", "w"):
        pass
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    with open(out, "w") as f:
        while True:
            f.write(s.recv(65536).hex() + "\n")
            f.flush()


def nfq_msg(queue, msg, seq, attrs, flags=0x05):
    body = struct.pack("!BBH", 0, 0, queue) + attrs
    return struct.pack("=IHHII", 16 + len(body), (3 << 8) | msg, flags, seq, 0) + body


def listen_queue(queue, out):
    """NFQUEUE listener: bind, copy whole packets, write each message as hex, accept it."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    s.bind((0, 0))

    def config(seq, attrs):
        s.send(nfq_msg(queue, 2, seq, attrs))
        return -struct.unpack_from("=i", s.recv(4096), 16)[0]

    for seq, attrs in enumerate([
        nla(1, struct.pack("!BBH", 1, 0, 0)),             # CFG_CMD BIND
        nla(2, struct.pack("!IB", 0xFFFF, 2)),            # CFG_PARAMS packet, 0xffff
    ], 1):
        if config(seq, attrs):
            sys.exit(f"NFQUEUE config failed at step {seq}")
    # FAIL_OPEN | CONNTRACK; the kernel refuses CONNTRACK without conntrack's netlink glue.
    if config(3, nla(5, struct.pack("!I", 3)) + nla(4, struct.pack("!I", 3))):
        if config(4, nla(5, struct.pack("!I", 1)) + nla(4, struct.pack("!I", 3))):
            sys.exit("NFQUEUE flags refused")
    with open(out + ".ready", "w"):
        pass
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    with open(out, "w") as f:
        while True:
            m = s.recv(65536)
            f.write(m.hex() + "\n")
            f.flush()
            ty, = struct.unpack_from("=H", m, 4)
            if ty != (3 << 8):
                continue
            off = 20
            while off < len(m):
                alen, aty = struct.unpack_from("=HH", m, off)
                if aty & 0x3FFF == 1:                     # NFQA_PACKET_HDR: packet id first
                    pid, = struct.unpack_from("!I", m, off + 4)
                    s.send(nfq_msg(queue, 1, 0, nla(2, struct.pack("!II", 1, pid)), flags=0x01))
                    break
                off += (alen + 3) & ~3


def encode_name(name):
    return b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"


def query(transport, server, qname, qtype, edns, qid):
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 1 if edns else 0)
    q += encode_name(qname) + struct.pack("!HH", qtype, 1)
    if edns:
        q += b"\0" + struct.pack("!HHIH", 41, 1232, 0, 0)
    fam = socket.AF_INET6 if ":" in server else socket.AF_INET
    if transport == "udp":
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.settimeout(3)
        s.sendto(q, (server, 53))
        s.recv(4096)
    else:
        s = socket.create_connection((server, 53), timeout=3)
        s.sendall(struct.pack("!H", len(q)) + q)
        n = struct.unpack("!H", s.recv(2))[0]
        while n > 0:
            n -= len(s.recv(n))
        s.close()


def wait_file(path, what, timeout=5):
    end = time.time() + timeout
    while not os.path.exists(path):
        if time.time() > end:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.05)


def capture(outdir, queue=False):
    os.makedirs(outdir, exist_ok=True)
    procs = []
    try:
        for ns in (CLI, RES):
            sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", "cli0", "netns", CLI, "type", "veth", "peer", "res0", "netns", RES)
        for ns, dev, a4, a6 in ((CLI, "cli0", "10.53.0.2", "fd53::2"), (RES, "res0", RES4, RES6)):
            sh(*nsx(ns, "ip", "link", "set", "lo", "up"))
            sh(*nsx(ns, "ip", "addr", "add", a4 + "/24", "dev", dev))
            sh(*nsx(ns, "ip", "addr", "add", a6 + "/64", "dev", dev, "nodad"))
            sh(*nsx(ns, "ip", "link", "set", dev, "up"))
        rules = {
            RES: ("output", ' prefix "leash-dns"'),
            CLI: ("input", ""),
        }
        for ns, (hook, prefix) in rules.items():
            if queue:
                for tool in ("iptables-nft", "ip6tables-nft"):
                    for proto in ("udp", "tcp"):
                        sh(*nsx(ns, tool, "-A", hook.upper(), "-p", proto, "--sport", "53",
                                "-j", "NFQUEUE", "--queue-num", str(QUEUE), "--queue-bypass"))
                continue
            r = (f"table inet lab {{\n chain replies {{\n type filter hook {hook} priority 0;\n"
                 f" udp sport 53 log{prefix} group {GROUP}\n tcp sport 53 log{prefix} group {GROUP}\n }}\n}}\n")
            sh(*nsx(ns, "nft", "-f", "-"), stdin=r)
        kind = "nfqueue" if queue else "nflog"
        for ns, tag in ((RES, "output"), (CLI, "input")):
            out = os.path.join(outdir, f"{kind}-{tag}.hex")
            procs.append(subprocess.Popen(nsx(ns, sys.executable, __file__, "listen-queue" if queue else "listen",
                                              str(QUEUE if queue else GROUP), out)))
            wait_file(out + ".ready", f"{kind} listener")
            os.remove(out + ".ready")
        if not queue:
            pcap = os.path.join(outdir, "replies.pcap")
            td = subprocess.Popen(nsx(RES, "tcpdump", "-i", "res0", "-U", "--immediate-mode", "-w", pcap, "port 53"),
                                  stderr=subprocess.PIPE, text=True)
            procs.append(td)
            while "listening on" not in (td.stderr.readline() or "listening on"):
                pass
        procs.append(subprocess.Popen(nsx(RES, *DNSMASQ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(0.5)
        for name, *q in QUERIES:
            sh(*nsx(CLI, sys.executable, __file__, "query", *map(str, q)))
        time.sleep(0.5)
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout=3)
            except subprocess.TimeoutExpired:
                p.kill()
        for ns in (CLI, RES):
            sh("ip", "netns", "del", ns, check=False)


# ---- turning captures into Rust constants -------------------------------

def read_pcap(path):
    data = open(path, "rb").read()
    magic, = struct.unpack_from("<I", data)
    assert magic == 0xA1B2C3D4, "want a little-endian microsecond pcap"
    linktype, = struct.unpack_from("<I", data, 20)
    assert linktype == 1, "want Ethernet"
    off, out = 24, []
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack_from("<IIII", data, off)
        out.append(data[off + 16 + 14: off + 16 + incl])  # drop the Ethernet header
        off += 16 + incl
    return out


def l4(pkt):
    """(proto, sport, l4 header length, offset of the L4 header)."""
    if pkt[0] >> 4 == 4:
        off, proto = (pkt[0] & 15) * 4, pkt[9]
    else:
        off, proto = 40, pkt[6]
    sport, = struct.unpack_from("!H", pkt, off)
    hl = 8 if proto == 17 else (pkt[off + 12] >> 4) * 4
    return proto, sport, hl, off


def dns_of(pkt):
    proto, sport, hl, off = l4(pkt)
    body = pkt[off + hl:]
    return body[2:] if proto == 6 else body


def read_name(msg, off):
    labels, end = [], None
    while True:
        n = msg[off]
        if n >= 0xC0:
            end = end or off + 2
            off = ((n & 0x3F) << 8) | msg[off + 1]
            continue
        if n == 0:
            return ".".join(labels), end or off + 1
        labels.append(msg[off + 1: off + 1 + n].decode())
        off += 1 + n


TYPES = {1: "A", 5: "CNAME", 28: "AAAA", 41: "OPT", 6: "SOA"}


def dns_chunks(msg):
    """Splits a DNS message into (bytes, comment) pieces: header, question, RRs."""
    qid, flags, qd, an, ns, ar = struct.unpack_from("!6H", msg)
    out = [(msg[:12], f"DNS id {qid:#06x} flags {flags:#06x} (rcode {flags & 15}) qd {qd} an {an} ns {ns} ar {ar}")]
    off = 12
    for _ in range(qd):
        name, end = read_name(msg, off)
        qt, = struct.unpack_from("!H", msg, end)
        out.append((msg[off:end + 4], f"question {name} {TYPES.get(qt, qt)} IN"))
        off = end + 4
    for section, count in (("answer", an), ("authority", ns), ("additional", ar)):
        for _ in range(count):
            name, end = read_name(msg, off)
            ty, cls, ttl, rdlen = struct.unpack_from("!HHIH", msg, end)
            rd = msg[end + 10: end + 10 + rdlen]
            if ty == 1:
                val = socket.inet_ntop(socket.AF_INET, rd)
            elif ty == 28:
                val = socket.inet_ntop(socket.AF_INET6, rd)
            elif ty == 5:
                val = read_name(msg, end + 10)[0]
            else:
                val = f"{rdlen} bytes"
            out.append((msg[off:end + 10 + rdlen],
                        f"{section} {name or '.'} {TYPES.get(ty, ty)} class {cls} ttl {ttl} {val}"))
            off = end + 10 + rdlen
    return out


def packet_chunks(pkt):
    proto, sport, hl, off = l4(pkt)
    if pkt[0] >> 4 == 4:
        src, dst = socket.inet_ntop(socket.AF_INET, pkt[12:16]), socket.inet_ntop(socket.AF_INET, pkt[16:20])
        out = [(pkt[:off], f"IPv4 {src} -> {dst} proto {proto} len {len(pkt)}")]
    else:
        src, dst = socket.inet_ntop(socket.AF_INET6, pkt[8:24]), socket.inet_ntop(socket.AF_INET6, pkt[24:40])
        out = [(pkt[:off], f"IPv6 {src} -> {dst} next header {proto}")]
    dport, = struct.unpack_from("!H", pkt, off + 2)
    out.append((pkt[off:off + hl], f"{'UDP' if proto == 17 else 'TCP'} {sport} -> {dport}"))
    body = pkt[off + hl:]
    if proto == 6:
        out.append((body[:2], f"DNS-over-TCP length {len(body) - 2}"))
        body = body[2:]
    return out + dns_chunks(body)


NFULA = {1: "NFULA_PACKET_HDR", 2: "NFULA_MARK", 3: "NFULA_TIMESTAMP", 4: "NFULA_IFINDEX_INDEV",
         5: "NFULA_IFINDEX_OUTDEV", 8: "NFULA_HWADDR", 9: "NFULA_PAYLOAD", 10: "NFULA_PREFIX",
         11: "NFULA_UID", 14: "NFULA_GID", 15: "NFULA_HWTYPE", 16: "NFULA_HWHEADER", 17: "NFULA_HWLEN"}


def nflog_chunks(msg):
    ln, ty, fl, seq, pid = struct.unpack_from("=IHHII", msg)
    fam, ver, res = struct.unpack_from("!BBH", msg, 16)
    out = [(msg[:16], f"nlmsghdr: len {ln} type {ty:#06x} flags {fl:#06x} seq {seq} pid {pid}"),
           (msg[16:20], f"nfgenmsg: family {fam} version {ver} res_id {res}")]
    off = 20
    while off < ln:
        alen, aty = struct.unpack_from("=HH", msg, off)
        padded = (alen + 3) & ~3
        name = NFULA.get(aty & 0x3FFF, f"attr {aty}")
        if aty == 9:
            out.append((msg[off:off + 4], f"{name} (len {alen}): the packet, network header first"))
            out += [(b, "  " + c) for b, c in packet_chunks(msg[off + 4:off + alen])]
            if padded > alen:
                out.append((msg[off + alen:off + padded], "  padding"))
        else:
            val = msg[off + 4:off + alen]
            desc = val.rstrip(b"\0").decode() if aty == 10 else val.hex()
            out.append((msg[off:off + padded], f"{name} = {desc}"))
        off += padded
    return out


def rust_const(name, doc, chunks):
    lines = [f"/// {d}" for d in doc] + ["#[rustfmt::skip]", f"pub const {name}: &[u8] = &["]
    for b, c in chunks:
        for i in range(0, max(len(b), 1), 16):
            part = b[i:i + 16]
            if not part:
                continue
            hexes = ", ".join(f"0x{x:02x}" for x in part)
            lines.append(f"    {hexes},  // {c}" if i == 0 else f"    {hexes},")
    lines.append("];")
    return "\n".join(lines)


def rust(outdir):
    pkts = {}
    for p in read_pcap(os.path.join(outdir, "replies.pcap")):
        proto, sport, hl, off = l4(p)
        if sport == 53 and len(dns_of(p)) >= 12:
            pkts[struct.unpack_from("!H", dns_of(p))[0]] = p
    seeds = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz", "seeds")
    os.makedirs(os.path.join(seeds, "dns_packet"), exist_ok=True)
    os.makedirs(os.path.join(seeds, "nflog_message"), exist_ok=True)
    for name, transport, server, qname, qtype, edns, qid in QUERIES:
        p = pkts[qid]
        open(os.path.join(seeds, "dns_packet", name.lower()), "wb").write(p)
        ext = " +EDNS" if edns else ""
        print(rust_const(f"DNS_{name}", [
            f"Reply to a {transport.upper()} query {qname} {TYPES[qtype]}{ext} (id {qid:#06x}) to {server}:53,",
            "captured by `tcpdump -i res0 -w` in the resolver namespace of `scripts/dns_lab.py capture`",
            "(dnsmasq 2.90); Ethernet header removed.",
        ], packet_chunks(p)))
        print()
    for tag, want in (("output", ["A_UDP4", "A_TCP4"]), ("input", ["AAAA_UDP6"])):
        msgs = [bytes.fromhex(l) for l in open(os.path.join(outdir, f"nflog-{tag}.hex")) if l.strip()]
        for name in want:
            qid = next(q[6] for q in QUERIES if q[0] == name)
            for m in msgs:
                off = 20
                while off < len(m):
                    alen, aty = struct.unpack_from("=HH", m, off)
                    if aty == 9:
                        pl = m[off + 4:off + alen]
                        body = dns_of(pl)
                        if len(body) >= 12 and struct.unpack_from("!H", body)[0] == qid:
                            break
                    off += (alen + 3) & ~3
                else:
                    continue
                const = f"NFLOG_{tag.upper()}_{name}"
                open(os.path.join(seeds, "nflog_message", const.lower()), "wb").write(m)
                hook = "output hook of the resolver" if tag == "output" else "input hook of the client"
                print(rust_const(const, [
                    f"NFLOG packet message for the reply to {name} (id {qid:#06x}), logged on the {hook}",
                    f"namespace by `nft ... log group {GROUP}` and read by the netlink listener of",
                    "`scripts/dns_lab.py capture` (kernel 6.18, x86_64: host byte order is little-endian).",
                ], nflog_chunks(m)))
                print()
                break


NFQA = {1: "NFQA_PACKET_HDR", 3: "NFQA_MARK", 4: "NFQA_TIMESTAMP", 5: "NFQA_IFINDEX_INDEV",
        6: "NFQA_IFINDEX_OUTDEV", 9: "NFQA_HWADDR", 10: "NFQA_PAYLOAD", 11: "NFQA_CT", 12: "NFQA_CT_INFO",
        13: "NFQA_CAP_LEN", 14: "NFQA_SKB_INFO", 16: "NFQA_UID", 17: "NFQA_GID"}


def nfqueue_chunks(msg):
    ln, ty, fl, seq, pid = struct.unpack_from("=IHHII", msg)
    fam, ver, res = struct.unpack_from("!BBH", msg, 16)
    out = [(msg[:16], f"nlmsghdr: len {ln} type {ty:#06x} flags {fl:#06x} seq {seq} pid {pid}"),
           (msg[16:20], f"nfgenmsg: family {fam} version {ver} res_id {res}")]
    off = 20
    while off < ln:
        alen, aty = struct.unpack_from("=HH", msg, off)
        padded = min((alen + 3) & ~3, ln - off)
        name = NFQA.get(aty & 0x3FFF, f"attr {aty}")
        val = msg[off + 4:off + alen]
        if aty == 10:
            out.append((msg[off:off + 4], f"{name} (len {alen}): the packet, network header first"))
            out += [(b, "  " + c) for b, c in packet_chunks(val)]
            if padded > alen:
                out.append((msg[off + alen:off + padded], "  padding"))
        elif aty == 1:
            pid_, proto, hook = struct.unpack("!IHB", val)
            out.append((msg[off:off + padded], f"{name}: packet_id {pid_} hw_protocol {proto:#06x} hook {hook}"))
        else:
            out.append((msg[off:off + padded], f"{name} = {val.hex()}"))
        off += padded
    return out


def queue_rust(outdir):
    seeds = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz", "seeds", "nfqueue_message")
    os.makedirs(seeds, exist_ok=True)
    for tag, want in (("output", ["A_UDP4", "AAAA_UDP6", "A_TCP4"]), ("input", ["A_UDP4"])):
        msgs = [bytes.fromhex(l) for l in open(os.path.join(outdir, f"nfqueue-{tag}.hex")) if l.strip()]
        for name in want:
            qid = next(q[6] for q in QUERIES if q[0] == name)
            for m in msgs:
                off = 20
                while off < len(m):
                    alen, aty = struct.unpack_from("=HH", m, off)
                    if aty == 10:
                        body = dns_of(m[off + 4:off + alen])
                        if len(body) >= 12 and struct.unpack_from("!H", body)[0] == qid:
                            break
                    off += (alen + 3) & ~3
                else:
                    continue
                const = f"NFQUEUE_{tag.upper()}_{name}"
                open(os.path.join(seeds, const.lower()), "wb").write(m)
                hook = "output hook of the resolver" if tag == "output" else "input hook of the client"
                print(rust_const(const, [
                    f"NFQUEUE packet message for the reply to {name} (id {qid:#06x}), queued on the {hook}",
                    f"namespace by `iptables-nft ... -j NFQUEUE --queue-num {QUEUE} --queue-bypass` and read by the",
                    "listener of `scripts/dns_lab.py queue-capture` (bound with FAIL_OPEN; the kernel refused",
                    "CONNTRACK; kernel 6.18, x86_64: host byte order is little-endian).",
                ], nfqueue_chunks(m)))
                print()
                break


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "listen":
        listen(int(sys.argv[2]), sys.argv[3])
    elif cmd == "query":
        t, server, qname, qtype, edns, qid = sys.argv[2:8]
        query(t, server, qname, int(qtype), edns == "True", int(qid))
    elif cmd == "listen-queue":
        listen_queue(int(sys.argv[2]), sys.argv[3])
    elif cmd == "capture":
        capture(sys.argv[2])
    elif cmd == "queue-capture":
        capture(sys.argv[2], queue=True)
    elif cmd == "queue-rust":
        queue_rust(sys.argv[2])
    elif cmd == "rust":
        rust(sys.argv[2])
    else:
        sys.exit(__doc__)
