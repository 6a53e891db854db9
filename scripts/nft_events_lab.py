#!/usr/bin/env python3
"""Captures real nf_tables notifications for leash's tests (needs root).

In a throwaway network namespace: a netlink socket joins NFNLGRP_NFTABLES
(group 7 of NETLINK_NETFILTER), leash-like tables are made, and each
command below runs; every datagram it causes is printed as a Rust
constant with its layout, for `daemon/src/netlink/captured.rs`.

    scripts/nft_events_lab.py            # Rust constants on stdout
    scripts/nft_events_lab.py --raw      # one line per message instead

The namespace is removed on exit, failure included.
"""

import ctypes
import os
import socket
import struct
import subprocess
import sys

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NFNLGRP_NFTABLES = 7
NS = f"leash-nftev-{os.getpid()}"

TABLE = """table inet leash {
\tset quarantine_mac { type ether_addr; flags timeout; elements = { 02:00:00:00:07:01 } }
\tset block_v4 { type ether_addr . ipv4_addr; flags timeout; elements = { 02:00:00:00:07:02 . 203.0.113.7 timeout 1h } }
\tchain lan_out {
\t\ttype filter hook forward priority filter - 10; policy accept;
\t\tether saddr @quarantine_mac drop
\t}
}
table inet fw4 {
\tchain input { type filter hook input priority filter; policy accept; }
}
"""

# (constant name, command): a shell command, or "destroy" for a raw
# NFT_MSG_DESTROYTABLE batch (nft 1.0.6 has no `destroy` command).
COMMANDS = [
    ("NFT_EV_DELETE_TABLE", "nft delete table inet leash"),
    ("NFT_EV_FLUSH_SET", "nft flush set inet leash quarantine_mac"),
    ("NFT_EV_FLUSH_CHAIN", "nft flush chain inet leash lan_out"),
    ("NFT_EV_ADD_RULE", "nft add rule inet leash lan_out accept"),
    ("NFT_EV_DELETE_SET", "nft delete set inet leash block_v4"),
    ("NFT_EV_ADD_ELEMENT", "nft add element inet leash block_v4 { 02:00:00:00:07:03 . 203.0.113.8 timeout 60s }"),
    ("NFT_EV_FLUSH_RULESET", "nft flush ruleset"),
    ("NFT_EV_DESTROY_TABLE", "destroy"),
]

MSG = {0: "NEWTABLE", 2: "DELTABLE", 3: "NEWCHAIN", 5: "DELCHAIN", 6: "NEWRULE", 8: "DELRULE",
       9: "NEWSET", 11: "DELSET", 12: "NEWSETELEM", 14: "DELSETELEM", 15: "NEWGEN",
       26: "DESTROYTABLE", 27: "DESTROYCHAIN", 28: "DESTROYRULE", 29: "DESTROYSET", 30: "DESTROYSETELEM"}
# Attribute names per message kind (uapi nf_tables.h).
ATTRS = {
    "TABLE": {1: "NFTA_TABLE_NAME", 2: "NFTA_TABLE_FLAGS", 3: "NFTA_TABLE_USE", 4: "NFTA_TABLE_HANDLE", 6: "NFTA_TABLE_USERDATA"},
    "CHAIN": {1: "NFTA_CHAIN_TABLE", 2: "NFTA_CHAIN_HANDLE", 3: "NFTA_CHAIN_NAME", 4: "NFTA_CHAIN_HOOK", 5: "NFTA_CHAIN_POLICY",
              6: "NFTA_CHAIN_USE", 7: "NFTA_CHAIN_TYPE", 10: "NFTA_CHAIN_FLAGS"},
    "RULE": {1: "NFTA_RULE_TABLE", 2: "NFTA_RULE_CHAIN", 3: "NFTA_RULE_HANDLE", 4: "NFTA_RULE_EXPRESSIONS", 6: "NFTA_RULE_POSITION"},
    "SETELEM": {1: "NFTA_SET_ELEM_LIST_TABLE", 2: "NFTA_SET_ELEM_LIST_SET", 3: "NFTA_SET_ELEM_LIST_ELEMENTS"},
    "SET": {1: "NFTA_SET_TABLE", 2: "NFTA_SET_NAME", 3: "NFTA_SET_FLAGS", 16: "NFTA_SET_HANDLE"},
    "GEN": {1: "NFTA_GEN_ID", 2: "NFTA_GEN_PROC_PID", 3: "NFTA_GEN_PROC_NAME"},
}
STRINGS = {"NFTA_TABLE_NAME", "NFTA_CHAIN_TABLE", "NFTA_CHAIN_NAME", "NFTA_CHAIN_TYPE", "NFTA_RULE_TABLE", "NFTA_RULE_CHAIN",
           "NFTA_SET_ELEM_LIST_TABLE", "NFTA_SET_ELEM_LIST_SET", "NFTA_SET_TABLE", "NFTA_SET_NAME", "NFTA_GEN_PROC_NAME"}


def kind(name):
    for k in ("SETELEM", "TABLE", "CHAIN", "RULE", "SET", "GEN"):
        if name.endswith(k):
            return k
    return None


def sh(cmd):
    r = subprocess.run(cmd, shell=isinstance(cmd, str), capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{cmd}: {r.stderr}")
    return r


def enter_netns():
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{NS}", os.O_RDONLY)
    if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
        raise OSError(ctypes.get_errno(), "setns")
    os.close(fd)


def read_all(s):
    out = []
    while True:
        try:
            out.append(s.recv(65536))
        except (BlockingIOError, socket.timeout):
            return out


def messages(d):
    off = 0
    while off + 16 <= len(d):
        ln = struct.unpack_from("=I", d, off)[0]
        if ln < 16:
            return
        yield d[off:off + ln]
        off += (ln + 3) & ~3


def chunks(msg):
    ln, ty, fl, seq, pid = struct.unpack_from("=IHHII", msg)
    fam, ver, res = struct.unpack_from("!BBH", msg, 16)
    name = MSG.get(ty & 0xff, f"msg {ty & 0xff}")
    out = [(msg[:16], f"nlmsghdr: len {ln} type {ty:#06x} ({name}) flags {fl:#06x} seq {seq} pid {pid}"),
           (msg[16:20], f"nfgenmsg: family {fam} version {ver} res_id {res}")]
    names = ATTRS.get(kind(name), {})
    off = 20
    while off + 4 <= ln:
        alen, aty = struct.unpack_from("=HH", msg, off)
        padded = (alen + 3) & ~3
        an = names.get(aty & 0x3FFF, f"attr {aty & 0x3FFF}")
        val = msg[off + 4:off + alen]
        if aty & 0x8000:
            desc = f"{an} (len {alen}, NESTED), not decoded"
        elif len(val) > 16 and an not in STRINGS:
            desc = f"{an} (len {alen}), not decoded"
        elif an in STRINGS:
            desc = f"{an} = \"{val.rstrip(bytes(1)).decode()}\""
        else:
            desc = f"{an} = {val.hex()}"
        out.append((msg[off:off + padded], desc))
        off += padded
    return out


def rust_const(name, doc, datagrams):
    lines = [f"/// {d}" for d in doc] + ["#[rustfmt::skip]", f"pub const {name}: &[u8] = &["]
    for i, d in enumerate(datagrams):
        if len(datagrams) > 1:
            lines.append(f"    // datagram {i + 1} of {len(datagrams)}")
        for m in messages(d):
            for b, c in chunks(m):
                for j in range(0, len(b), 16):
                    hexes = ", ".join(f"0x{x:02x}" for x in b[j:j + 16])
                    lines.append(f"    {hexes},  // {c}" if j == 0 else f"    {hexes},")
    lines.append("];")
    return "\n".join(lines)


def destroy_table(name):
    """NFT_MSG_DESTROYTABLE (26) in a batch, as newer nft sends for `destroy table`."""
    def msg(ty, flags, seq, family, res_id, attrs=b""):
        body = struct.pack("!BBH", family, 0, res_id) + attrs
        return struct.pack("=IHHII", 16 + len(body), ty, flags, seq, 0) + body
    val = name.encode() + b"\0"
    attr = struct.pack("=HH", 4 + len(val), 1) + val
    attr += b"\0" * (-len(attr) % 4)
    batch = msg(0x10, 1, 1, 0, 10) + msg((10 << 8) | 26, 1 | 4, 2, 1, 0, attr) + msg(0x11, 1, 3, 0, 10)
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    s.bind((0, 0))
    s.send(batch)
    ack = s.recv(4096)
    errno = struct.unpack_from("=i", ack, 16)[0]
    s.close()
    if errno:
        raise RuntimeError(f"DESTROYTABLE: errno {-errno}")


def main():
    raw = "--raw" in sys.argv
    sh(["ip", "netns", "add", NS])
    try:
        enter_netns()
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        s.bind((0, 0))
        s.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NFNLGRP_NFTABLES)
        s.setblocking(False)
        for const, cmd in COMMANDS:
            sh(["nft", "flush", "ruleset"])
            p = subprocess.run(["nft", "-f", "-"], input=TABLE, text=True, capture_output=True)
            if p.returncode:
                raise RuntimeError(p.stderr)
            read_all(s)
            if cmd == "destroy":
                what = f"a raw NFT_MSG_DESTROYTABLE batch for inet leash from a socket of pid {os.getpid()}"
                destroy_table("leash")
            else:
                # Each nft is its own process: its pid is in NEWGEN (NFTA_GEN_PROC_PID).
                p = subprocess.Popen(cmd, shell=True)
                p.wait()
                what = f"`{cmd}`"
            got = read_all(s)
            if raw:
                print(f"== {what}")
                for d in got:
                    for m in messages(d):
                        print("   ", "; ".join(c for _, c in chunks(m)))
                continue
            doc = [f"Datagrams received on NFNLGRP_NFTABLES after {what} (kernel {os.uname().release},",
                   f"nft {sh(['nft', '--version']).stdout.split()[1]}) on a table made by `scripts/nft_events_lab.py`."]
            print(rust_const(const, doc, got))
            print()
    finally:
        subprocess.run(["ip", "netns", "del", NS])


if __name__ == "__main__":
    main()
