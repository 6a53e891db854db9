#!/usr/bin/env bash
# Prints leash's speed and memory figures as key=value lines (release build,
# real kernel, in a namespace lab). Figures only: nothing here passes or fails.
#   sudo bash scripts/bench.sh            (BENCH_BURST=100000 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench.sh: needs root (network namespaces)" >&2; exit 1; }
# dnsmasq: the lab's resolvers; iptables-nft + python3: the 20 ms WAN delay
# (NFQUEUE and tests/tools/nfq_delay.py; the lab kernel has no netem).
need=()
command -v conntrack >/dev/null || need+=(conntrack)
command -v nft >/dev/null || need+=(nftables)
command -v dnsmasq >/dev/null || need+=(dnsmasq-base)
command -v iptables-nft >/dev/null || need+=(iptables)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}" iproute2 >/dev/null
fi
# The bench is a release build (panic = abort): a failing figure cannot
# unwind into the labs' cleanup, so the registry does it on exit.
# shellcheck source=scripts/lab-registry.sh
. "$PWD/scripts/lab-registry.sh"
cargo build --release --locked -p leash -p leash-lab --bins
cargo build --release --locked -p leash --example list_bench
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
echo "binary_size_x86_64_bytes=$(stat -c %s "$target/release/leash")"
LEASH_BIN="$target/release/leash" "$target/release/bench"

# Deny-list loading: time and RSS for 100 000 and 1 000 000 domains.
echo "# list load (daemon/examples/list_bench.rs)"
"$target/release/examples/list_bench"
