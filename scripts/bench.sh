#!/usr/bin/env bash
# Prints leash's speed and memory figures as key=value lines (release build,
# real kernel, in a namespace lab). Figures only: nothing here passes or fails.
#   sudo bash scripts/bench.sh            (BENCH_BURST=100000 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench.sh: needs root (network namespaces)" >&2; exit 1; }
command -v conntrack >/dev/null && command -v nft >/dev/null || {
    DEBIAN_FRONTEND=noninteractive apt-get install -y nftables conntrack iproute2 >/dev/null
}
cargo build --release --locked -p leash -p leash-lab --bins
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
echo "binary_size_x86_64_bytes=$(stat -c %s "$target/release/leash")"
LEASH_BIN="$target/release/leash" "$target/release/bench"
