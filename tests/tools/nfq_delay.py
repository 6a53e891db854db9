#!/usr/bin/env python3
"""Delays packets by a fixed time through NFQUEUE (the lab kernel has no netem).

    nfq_delay.py --queue N [--delay-ms 20] [--maxlen 16384]

Run it in the namespace whose packets are queued, e.g. with
`iptables-nft -t mangle -A PREROUTING -i eth0 -j NFQUEUE --queue-num N`.
It binds queue N (copy mode META: no payload crosses to userspace), and
gives each queued packet an NF_ACCEPT verdict `delay` after it arrived, so a
link with the rule in one direction gets that much more round-trip time.
Prints `ready queue=N delay_ms=D` once bound; runs until killed.

Standard library only: AF_NETLINK / NETLINK_NETFILTER and the
nfnetlink_queue messages (include/uapi/linux/netfilter/nfnetlink_queue.h).
"""

import argparse
import errno
import heapq
import select
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5
SO_RCVBUFFORCE = 33

NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2

NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLMSG_ERROR = 2
NLMSG_DONE = 3

# enum nfqnl_attr_type
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
# enum nfqnl_attr_config
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5
NFQA_CFG_F_GSO = 1 << 2
# enum nfqnl_msg_config_cmds
NFQNL_CFG_CMD_BIND = 1
NFQNL_CFG_CMD_UNBIND = 2
# enum nfqnl_config_mode
NFQNL_COPY_META = 1

NF_ACCEPT = 1
NLA_TYPE_MASK = 0x3FFF

NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid (host order)
NFGENMSG = struct.Struct("!BBH")  # family, version, res_id (big endian)
NLATTR = struct.Struct("=HH")  # len, type (host order)


def align4(n):
    return (n + 3) & ~3


def attr(kind, data):
    n = NLATTR.size + len(data)
    return NLATTR.pack(n, kind) + data + b"\0" * (align4(n) - n)


def message(msg_type, flags, seq, queue, attrs=b""):
    payload = NFGENMSG.pack(socket.AF_UNSPEC, 0, queue) + attrs
    kind = (NFNL_SUBSYS_QUEUE << 8) | msg_type
    return NLMSGHDR.pack(NLMSGHDR.size + len(payload), kind, flags, seq, 0) + payload


def messages(buf):
    """Yields (type, flags, seq, payload) for each netlink message in buf."""
    off = 0
    while off + NLMSGHDR.size <= len(buf):
        n, kind, flags, seq, _pid = NLMSGHDR.unpack_from(buf, off)
        if n < NLMSGHDR.size or off + n > len(buf):
            return
        yield kind, flags, seq, buf[off + NLMSGHDR.size: off + n]
        off += align4(n)


def attrs(buf):
    """Yields (type, data) for the attributes after the nfgenmsg header."""
    off = NFGENMSG.size
    while off + NLATTR.size <= len(buf):
        n, kind = NLATTR.unpack_from(buf, off)
        if n < NLATTR.size or off + n > len(buf):
            return
        yield kind & NLA_TYPE_MASK, buf[off + NLATTR.size: off + n]
        off += align4(n)


class Queue:
    def __init__(self, num, maxlen):
        self.num = num
        self.seq = 0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.bind((0, 0))
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
        # A lost notification must not fail the next recv: the packet just
        # stays queued (TCP retransmits it).
        self.sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
        self.config(attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_UNBIND, 0)), ignore_error=True)
        self.config(attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, 0)))
        # nfqnl_msg_config_params is packed: __be32 copy_range, __u8 copy_mode.
        self.config(attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META)))
        self.config(attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", maxlen)))
        # GSO packets are queued whole (no software segmentation on the way).
        self.config(attr(NFQA_CFG_MASK, struct.pack("!I", NFQA_CFG_F_GSO)) + attr(NFQA_CFG_FLAGS, struct.pack("!I", NFQA_CFG_F_GSO)),
                    ignore_error=True)
        self.sock.setblocking(False)

    def config(self, attrs_bytes, ignore_error=False):
        self.seq += 1
        self.sock.send(message(NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, self.seq, self.num, attrs_bytes))
        while True:
            buf = self.sock.recv(65536)
            for kind, _flags, seq, payload in messages(buf):
                if kind == NLMSG_ERROR and seq == self.seq:
                    (err,) = struct.unpack_from("=i", payload, 0)
                    if err != 0 and not ignore_error:
                        raise OSError(-err, "nfqueue config: " + errno.errorcode.get(-err, str(-err)))
                    return

    def read_ids(self):
        """Packet ids of every notification waiting in the socket."""
        ids = []
        while True:
            try:
                buf = self.sock.recv(1 << 16)
            except BlockingIOError:
                return ids
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    continue
                raise
            for kind, _flags, _seq, payload in messages(buf):
                if kind != (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                    continue
                for t, data in attrs(payload):
                    if t == NFQA_PACKET_HDR and len(data) >= 4:
                        ids.append(struct.unpack_from("!I", data, 0)[0])
                        break

    def accept(self, ids):
        """One datagram carrying an NF_ACCEPT verdict message per id."""
        out = bytearray()
        for pid in ids:
            out += message(NFQNL_MSG_VERDICT, NLM_F_REQUEST, 0, self.num, attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, pid)))
            if len(out) > 60000:
                self.send(bytes(out))
                out = bytearray()
        if out:
            self.send(bytes(out))

    def send(self, data):
        while True:
            try:
                self.sock.send(data)
                return
            except BlockingIOError:
                select.select([], [self.sock], [], 0.01)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queue", type=int, required=True)
    ap.add_argument("--delay-ms", type=float, default=20.0)
    ap.add_argument("--maxlen", type=int, default=16384)
    a = ap.parse_args()
    delay = a.delay_ms / 1000.0
    q = Queue(a.queue, a.maxlen)
    print(f"ready queue={a.queue} delay_ms={a.delay_ms:g}", flush=True)
    ep = select.epoll()
    ep.register(q.sock.fileno(), select.EPOLLIN)
    due = []  # heap of (release time, arrival order, packet id)
    order = 0
    while True:
        timeout = max(0.0, due[0][0] - time.monotonic()) if due else -1
        if ep.poll(timeout):
            now = time.monotonic()
            for pid in q.read_ids():
                heapq.heappush(due, (now + delay, order, pid))
                order += 1
        now = time.monotonic()
        ready = []
        while due and due[0][0] <= now:
            ready.append(heapq.heappop(due)[2])
        if ready:
            q.accept(ready)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
