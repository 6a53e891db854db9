#!/usr/bin/env bash
# Size and cost budgets of the release build:
#   binary_size_aarch64_bytes   stripped static aarch64 binary (goal <= 2 MB)
#   instructions_per_event      instructions to judge one conntrack NEW event
#                               (goal <= 20 000), counted by callgrind on x86_64
#                               over daemon/examples/replay.rs:
#                               (Ir(11000) - Ir(1000)) / 10000, start-up cancelled.
# Installs valgrind with apt when missing; the aarch64 build needs what
# scripts/arm.sh installs (it is run for it when the target is missing).
#   bash scripts/bench-cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
AARCH64=${BENCH_AARCH64_TARGET:-aarch64-unknown-linux-musl}

if ! command -v valgrind >/dev/null; then
    echo "bench-cost: installing valgrind" >&2
    if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
fi

# 1. Size: the release profile strips; check that it did.
if ! rustup target list --installed | grep -qx "$AARCH64"; then
    ARM_TARGETS=$AARCH64 bash scripts/arm.sh build >&2
else
    cargo build --locked --release -q -p leash --target "$AARCH64"
fi
bin=$CARGO_TARGET_DIR/$AARCH64/release/leash
desc=$(file -b "$bin")
case $desc in *", stripped"*) ;; *) echo "bench-cost: $bin is not stripped: $desc" >&2; exit 1 ;; esac
size=$(stat -c %s "$bin")

# 2. Cost: the release profile, with symbols kept (stripping changes no
# instruction) so that the top functions can be named.
CARGO_PROFILE_RELEASE_STRIP=false cargo build --locked --release -q -p leash --example replay
replay=$CARGO_TARGET_DIR/release/examples/replay
declare -A ir
for n in 1000 11000; do
    out=$CARGO_TARGET_DIR/callgrind.replay.$n
    valgrind --tool=callgrind --callgrind-out-file="$out" "$replay" "$n" >"$out.log" 2>&1
    ir[$n]=$(sed -n 's/^summary: *//p' "$out")
    echo "bench-cost: N=$n Ir=${ir[$n]} ($(grep '^events=' "$out.log"))" >&2
done
per_event=$(((ir[11000] - ir[1000]) / 10000))
echo "bench-cost: top functions of N=11000:" >&2
callgrind_annotate "$CARGO_TARGET_DIR/callgrind.replay.11000" 2>/dev/null |
    sed -n '/file:function/,$p' | sed -n '3,10p' | cut -c1-160 >&2

echo "binary_size_aarch64_bytes=$size"
echo "binary_size_aarch64_target=$AARCH64 ($(case $desc in *"statically linked"*) echo static ;; *) echo dynamic ;; esac))"
echo "instructions_per_event=$per_event"
verdict() { if [ "$1" -le "$2" ]; then echo "within"; else echo "OVER"; fi; }
echo "budget: size $(verdict "$size" 2097152) 2 MB; instructions/event $(verdict "$per_event" 20000) 20000"
