#!/usr/bin/env bash
# The lab demo, for a human: sudo bash scripts/demo.sh
#
# Builds leash, makes a tiny network in namespaces (a phone and a camera on
# the router's LAN, the router running leash, dnsmasq and an MQTT broker, a
# WAN with "cloud" hosts) and tells the story: the phone resolves a tracker
# and is blocked before its first packet (the bytes that reached the
# tracker are shown: 0); the owner asks `explain` and consents, and the
# phone gets through; the camera phones home and is quarantined, and the
# alert arrives on MQTT. Everything is torn down on exit, also on failure
# or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "demo.sh: needs root (network namespaces, nftables): sudo bash scripts/demo.sh" >&2; exit 1; }

need=()
command -v nft >/dev/null || need+=(nftables)
command -v conntrack >/dev/null || need+=(conntrack)
command -v ip >/dev/null || need+=(iproute2)
command -v python3 >/dev/null || need+=(python3)
command -v dnsmasq >/dev/null || need+=(dnsmasq-base)
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_sub >/dev/null || need+=(mosquitto-clients)
if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update && apt-get install -y "${need[@]}"
fi
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "building leash"
cargo build -p leash
BIN="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/leash"

R=leashdemo-router W=leashdemo-wan P=leashdemo-phone C=leashdemo-cam
DIR=$(mktemp -d /tmp/leash-demo.XXXXXX)
PIDS=()
cleanup() {
    # SIGTERM first: leash removes its table on a clean stop.
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    for ns in $C $P $W $R; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$DIR"
}
trap cleanup EXIT
for ns in $C $P $W $R; do ip netns del "$ns" 2>/dev/null || true; done

say "building the lab: phone (192.168.7.11) and camera (192.168.7.12) -- router (br-lan 192.168.7.1: leash, dnsmasq, mosquitto) -- WAN (tracker 203.0.113.7, cloud 203.0.113.8, vendor 203.0.113.9)"
for ns in $R $W $P $C; do
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
ip -n $W addr add 203.0.113.9/32 dev lo
ip -n $W route add 192.168.7.0/24 via 192.0.2.1
ip -n $R link add lan1 type veth peer name eth0 netns $P
ip -n $R link set lan1 master br-lan
ip -n $R link set lan1 up
ip -n $P link set eth0 address 02:00:00:00:07:01
ip -n $P addr add 192.168.7.11/24 dev eth0
ip -n $P link set eth0 up
ip -n $P route add default via 192.168.7.1
ip -n $R link add lan2 type veth peer name eth0 netns $C
ip -n $R link set lan2 master br-lan
ip -n $R link set lan2 up
ip -n $C link set eth0 address 02:00:00:00:07:02
ip -n $C addr add 192.168.7.12/24 dev eth0
ip -n $C link set eth0 up
ip -n $C route add default via 192.168.7.1

# A web server on both cloud hosts, so that the phone's connections are real.
# Each connection's bytes are appended to received.txt as "dst peer bytes".
ip netns exec $W python3 -c '
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 443)); s.listen()
def serve(c, peer):
    n, dst = 0, c.getsockname()[0]
    c.settimeout(3)
    try:
        while True:
            b = c.recv(65536)
            if not b: break
            n += len(b)
    except OSError: pass
    c.close()
    with open(sys.argv[1], "a") as f: f.write(f"{dst} {peer[0]} {n}\n")
while True:
    c, peer = s.accept()
    threading.Thread(target=serve, args=(c, peer), daemon=True).start()' "$DIR/received.txt" &
PIDS+=($!)

# The router's resolver, as dnsmasq serves the LAN on OpenWrt.
ip netns exec $R dnsmasq --no-daemon --no-resolv --no-hosts --pid-file= --bind-interfaces \
    --listen-address=192.168.7.1 --address=/tracking.example.com/203.0.113.7 \
    --address=/cloud.example.com/203.0.113.8 --address=/telemetry.vendor.example/203.0.113.9 2> "$DIR/dnsmasq.log" &
PIDS+=($!)
# The MQTT broker (Home Assistant's, in a real home), on the router's loopback.
ip netns exec $R "$MOSQUITTO" -p 1883 > "$DIR/mosquitto.log" 2>&1 &
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

[profile.phone]
unlisted = "allow"
denied = "block"
deny = ["trackers", "telemetry"]

[list.trackers]
files = ["$DIR/trackers.txt"]

[list.telemetry]
selectors = ["203.0.113.9"]

[notify]
mqtt = "mqtt://127.0.0.1:1883"

[[device]]
mac = "02:00:00:00:07:01"
name = "phone"
profile = "phone"

[[device]]
mac = "02:00:00:00:07:02"
name = "camera"
profile = "iot"
TOML
: > "$DIR/dhcp.leases"
echo "||tracking.example.com^" > "$DIR/trackers.txt"
say "config ($DIR/leash.toml)"
cat "$DIR/leash.toml"

say "starting leash in the router"
ip netns exec $R "$BIN" daemon --config "$DIR/leash.toml" 2> "$DIR/daemon.log" &
PIDS+=($!)
export LEASH_SOCKET="$DIR/leash.sock"
for _ in $(seq 200); do "$BIN" status >/dev/null 2>&1 && break; sleep 0.05; done
"$BIN" status >/dev/null || { cat "$DIR/daemon.log"; echo "demo.sh: leash did not start" >&2; exit 1; }

ip netns exec $R mosquitto_sub -h 127.0.0.1 -v -t 'leash/#' > "$DIR/mqtt.txt" 2>&1 &
PIDS+=($!)

# A device resolves NAME through the router and at once connects to the
# answer and sends 256 KiB, as an app does (QUIC would not even wait for
# a handshake). Prints what it managed.
resolve_and_send() { ip netns exec "$1" python3 -c '
import random, socket, struct, sys
name = sys.argv[1]
q = struct.pack(">HHHHHH", random.randrange(65536), 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(2)
u.sendto(q, ("192.168.7.1", 53)); r = u.recv(512)
addr = ".".join(str(b) for b in r[-4:])
print(f"{name} is {addr} (answer from the router)")
try:
    c = socket.create_connection((addr, 443), timeout=1.5)
    c.settimeout(1.5); sent = 0
    try:
        while sent < 262144: sent += c.send(b"x" * 16384)
    except OSError: pass
    c.close(); print(f"connected to {addr} and sent {sent} bytes")
except OSError as e: print(f"no connection to {addr}: {e}")' "$2"; }

received_from() { sleep 0.5; awk -v dst="$1" -v src="$2" '$1 == dst && $2 == src { n += $3 } END { print n + 0 }' "$DIR/received.txt" 2>/dev/null || echo 0; }

say "the phone resolves the tracker tracking.example.com and sends to it at once"
resolve_and_send $P tracking.example.com
echo "bytes that reached the tracker from the phone: $(received_from 203.0.113.7 192.168.7.11)"
say "the owner asks why: leash explain phone tracking.example.com"
"$BIN" explain phone tracking.example.com
say "the owner consents: leash consent phone tracking.example.com"
"$BIN" consent phone tracking.example.com
say "the phone tries again"
resolve_and_send $P tracking.example.com
echo "bytes that reached the tracker from the phone now: $(received_from 203.0.113.7 192.168.7.11)"

say "the camera phones home to telemetry.vendor.example"
resolve_and_send $C telemetry.vendor.example
echo "bytes that reached the vendor from the camera: $(received_from 203.0.113.9 192.168.7.12)"
for _ in $(seq 100); do grep -q 'QUARANTINE' "$DIR/syslog.txt" && break; sleep 0.05; done
grep -q QUARANTINE "$DIR/syslog.txt" || { echo "demo.sh: no QUARANTINE line; daemon log:" >&2; cat "$DIR/daemon.log" >&2; exit 1; }
say "the camera, quarantined, tries the cloud it is allowed"
resolve_and_send $C cloud.example.com

say "syslog (logread on the router)"
cat "$DIR/syslog.txt"
for _ in $(seq 100); do grep -q '/alert .*QUARANTINE' "$DIR/mqtt.txt" && break; sleep 0.05; done
say "MQTT (what Home Assistant receives)"
grep -E '/alert |/device/' "$DIR/mqtt.txt" | cut -c1-220
say "nft list set inet leash quarantine_mac"
ip netns exec $R nft list set inet leash quarantine_mac
say "leash devices"
"$BIN" devices
say "leash status"
"$BIN" status
say "done: tearing the lab down"
