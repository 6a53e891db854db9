#!/usr/bin/env bash
# The lab demo, for a human: sudo bash scripts/demo.sh
#
# Builds leash, makes a tiny network in namespaces (a phone on the router's
# LAN, the router running leash, a WAN with "cloud" hosts), lets the phone
# phone home to a denied destination and shows what leash did about it.
# Everything is torn down on exit, also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "demo.sh: needs root (network namespaces, nftables): sudo bash scripts/demo.sh" >&2; exit 1; }

need=()
command -v nft >/dev/null || need+=(nftables)
command -v conntrack >/dev/null || need+=(conntrack)
command -v ip >/dev/null || need+=(iproute2)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update && apt-get install -y nftables conntrack dnsmasq-base iproute2 python3
fi

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "building leash"
cargo build -p leash
BIN="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/leash"

R=leashdemo-router W=leashdemo-wan P=leashdemo-phone
DIR=$(mktemp -d /tmp/leash-demo.XXXXXX)
PIDS=()
cleanup() {
    # SIGTERM first: leash removes its table on a clean stop.
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    for ns in $P $W $R; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$DIR"
}
trap cleanup EXIT
for ns in $P $W $R; do ip netns del "$ns" 2>/dev/null || true; done

say "building the lab: phone (02:00:00:00:07:01, 192.168.7.11) -- router (br-lan 192.168.7.1) -- WAN (203.0.113.7, 203.0.113.8)"
for ns in $R $W $P; do
    ip netns add "$ns"
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
    ip -n "$ns" link set lo up
done
ip -n $R link add br-lan type bridge
ip -n $R addr add 192.168.7.1/24 dev br-lan
ip -n $R addr add fd00:7::1/64 dev br-lan nodad
ip -n $R link set br-lan up
ip -n $R link add wan type veth peer name eth0 netns $W
ip -n $R addr add 192.0.2.1/24 dev wan
ip -n $R link set wan up
ip netns exec $R sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
ip -n $R route add default via 192.0.2.2
ip -n $W addr add 192.0.2.2/24 dev eth0
ip -n $W link set eth0 up
ip -n $W addr add 203.0.113.7/32 dev lo
ip -n $W addr add 203.0.113.8/32 dev lo
ip -n $W route add 192.168.7.0/24 via 192.0.2.1
ip -n $R link add lan1 type veth peer name eth0 netns $P
ip -n $R link set lan1 master br-lan
ip -n $R link set lan1 up
ip -n $P link set eth0 address 02:00:00:00:07:01
ip -n $P addr add 192.168.7.11/24 dev eth0
ip -n $P link set eth0 up
ip -n $P route add default via 192.168.7.1

# A web server on both cloud hosts, so that the phone's connections are real.
ip netns exec $W python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 443)); s.listen()
while True: s.accept()[0].close()' &
PIDS+=($!)

# The syslog daemon: a datagram socket at the config's syslog path.
python3 -u -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1])
while True: print(s.recv(65536).decode(errors="replace"), flush=True)' "$DIR/log" > "$DIR/syslog.txt" &
PIDS+=($!)
for _ in $(seq 100); do [ -S "$DIR/log" ] && break; sleep 0.05; done

cat > "$DIR/leash.toml" <<TOML
[daemon]
mode = "enforce"
lan = ["br-lan"]
socket = "$DIR/leash.sock"
state_dir = "$DIR/state"
leases = "$DIR/dhcp.leases"
syslog = "$DIR/log"

[defaults]
profile = "iot"

[profile.iot]
unlisted = "allow"
denied = "quarantine"
deny = ["telemetry"]

[list.telemetry]
selectors = ["203.0.113.7"]

[[device]]
mac = "02:00:00:00:07:01"
name = "phone"
profile = "iot"
TOML
: > "$DIR/dhcp.leases"
say "config ($DIR/leash.toml)"
cat "$DIR/leash.toml"

say "starting leash in the router"
ip netns exec $R "$BIN" daemon --config "$DIR/leash.toml" 2> "$DIR/daemon.log" &
PIDS+=($!)
export LEASH_SOCKET="$DIR/leash.sock"
for _ in $(seq 200); do "$BIN" status >/dev/null 2>&1 && break; sleep 0.05; done
"$BIN" status >/dev/null || { cat "$DIR/daemon.log"; echo "demo.sh: leash did not start" >&2; exit 1; }

connect() { ip netns exec $P python3 -c '
import socket, sys
try: socket.create_connection((sys.argv[1], 443), timeout=1.5).close(); print("connected")
except OSError as e: print("no connection:", e)' "$1"; }

say "the phone opens https://203.0.113.8 (allowed)"
connect 203.0.113.8
say "the phone phones home to 203.0.113.7 (on the telemetry deny list)"
connect 203.0.113.7

for _ in $(seq 100); do grep -q 'QUARANTINE' "$DIR/syslog.txt" && break; sleep 0.05; done
say "syslog"
cat "$DIR/syslog.txt"
grep -q QUARANTINE "$DIR/syslog.txt" || { echo "demo.sh: no QUARANTINE line; daemon log:" >&2; cat "$DIR/daemon.log" >&2; exit 1; }

say "nft list set inet leash quarantine_mac"
ip netns exec $R nft list set inet leash quarantine_mac
say "the phone tries https://203.0.113.8 again"
connect 203.0.113.8
say "leash devices"
"$BIN" devices
say "leash status"
"$BIN" status
say "done: tearing the lab down"
