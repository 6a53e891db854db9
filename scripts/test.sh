#!/usr/bin/env bash
# The one test command: on a fresh Debian machine, as root,
#   sudo bash scripts/test.sh
# installs what the lab needs, builds, runs the unit tests and the lab tests
# (network namespaces running the real leash binary), and fails non-zero on
# any failure.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

if [ "$(id -u)" != 0 ]; then
    echo "test.sh: the lab needs root (network namespaces, nftables): sudo bash scripts/test.sh" >&2
    exit 1
fi

# ---- packages: install only what is missing ----
need=()
command -v nft >/dev/null || need+=(nftables)
command -v conntrack >/dev/null || need+=(conntrack)
command -v dnsmasq >/dev/null || need+=(dnsmasq-base)
command -v ip >/dev/null || need+=(iproute2)
command -v python3 >/dev/null || need+=(python3)
# NFQUEUE rules in the lab (this kernel has only the xtables target): held
# DNS answers (tests/tests/hold.rs, the kernel tests) and the WAN delay.
command -v iptables-nft >/dev/null || need+=(iptables)
# The daemon under the package's capabilities (tests/tests/lifecycle.rs).
command -v setpriv >/dev/null || need+=(util-linux)
# Lists by URL are fetched with the router's client; on Debian, curl (tests/tests/lists.rs).
command -v curl >/dev/null || need+=(curl)
# The MQTT notifier's broker and clients (tests/tests/notify.rs).
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_sub >/dev/null || need+=(mosquitto-clients)
# The LuCI views' browser test (tests/tests/luci.rs).
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
    echo "test.sh: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y "${need[@]}"
fi
# playwright-core drives Debian's chromium; it downloads no browser.
(cd tests/luci && npm ci --no-audit --no-fund)
command -v cargo >/dev/null || { echo "test.sh: cargo not found: install the Rust toolchain with rustup" >&2; exit 1; }

# ---- clean up what a killed run of ours left behind, on exit ----
# shellcheck source=scripts/lab-registry.sh
. "$ROOT/scripts/lab-registry.sh"

# ---- build ----
cargo build --workspace --locked

# ---- unit tests, then the lab ----
cargo test -p leash
# The lab runs examples/make_mmdb (test geoip databases).
cargo build -p leash --examples
LEASH_BIN="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/leash" \
    cargo test -p leash-lab -- --test-threads=4

# ---- the router build: ARM unit tests under qemu, the OpenWrt package ----
bash scripts/arm.sh test
bash scripts/package-check.sh

echo "test.sh: all tests passed"
