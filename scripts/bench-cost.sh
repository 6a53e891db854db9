#!/usr/bin/env bash
# Size and cost budgets of the release build:
#   binary_size_aarch64_bytes   stripped static aarch64 binary (goal <= 2 MB)
#   instructions_per_event      instructions to judge one conntrack NEW event
#                               (goal <= 5 000), counted by callgrind on x86_64
#                               over daemon/examples/replay.rs:
#                               (Ir(11000) - Ir(1000)) / 10000, start-up cancelled;
#                               the top functions are printed the same way (each
#                               one's own instructions per event, start-up and the
#                               replay's stream building cancelled).
#   size_dep_<crate>_bytes      what each crate puts in the aarch64 binary: the
#                               symbols of an unstripped build of the same
#                               profile, grouped by crate (nm -C -S; generic code
#                               counts for the crate that defines it, drop glue for
#                               its type's; no .bss). An approximation: LTO inlines
#                               across crates, and unnamed data (string literals,
#                               tables) counts for no crate ("unattributed").
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
echo "bench-cost: top functions, own instructions per judged event:" >&2
for n in 1000 11000; do
    callgrind_annotate --inclusive=no "$CARGO_TARGET_DIR/callgrind.replay.$n" 2>/dev/null |
        sed -n '/file:function/,$p' | tail -n +3 >"$CARGO_TARGET_DIR/callgrind.replay.$n.txt"
done
python3 - "$CARGO_TARGET_DIR/callgrind.replay.1000.txt" "$CARGO_TARGET_DIR/callgrind.replay.11000.txt" <<'PY' >&2
import re, sys
def load(p):
    d = {}
    for line in open(p):
        m = re.match(r"\s*([\d,]+)\s+\([^)]*\)\s+(\S*?):(.*?)( \[.*\])?$", line)
        if m:
            d[m.group(3)] = d.get(m.group(3), 0) + int(m.group(1).replace(",", ""))
    return d
a, b = load(sys.argv[1]), load(sys.argv[2])
per = sorted(((b.get(k, 0) - a.get(k, 0)) / 10000, k) for k in set(a) | set(b))
for v, k in reversed(per[-12:]):
    print(f"  {v:7.0f}  {k[:150]}")
PY

# 3. Size per dependency: the same build with symbols, in a directory of
# its own (toggling strip would rebuild the stripped one each run).
CARGO_PROFILE_RELEASE_STRIP=false CARGO_TARGET_DIR=$CARGO_TARGET_DIR/size \
    cargo build --locked --release -q -p leash --target "$AARCH64"
unstripped=$CARGO_TARGET_DIR/size/$AARCH64/release/leash
deps=$(python3 - "$unstripped" "$size" <<'PY'
import collections, re, subprocess, sys
path, stripped = sys.argv[1], int(sys.argv[2])
out = subprocess.run(["nm", "-C", "-S", "--size-sort", path], capture_output=True, text=True, check=True).stdout
std = {"core", "alloc", "std", "std_detect", "hashbrown", "rustc_demangle", "addr2line", "gimli", "miniz_oxide"}
def crate_of(name):
    m = re.match(r"core::ptr::drop_in_place<(.*)>$", name)
    n = m.group(1) if m else name
    n = re.sub(r"^(?:[<&*( ]|const |mut |dyn |impl |bool |void |int )+", "", n)
    m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)::", n)
    if not m or m.group(1) == "compiler_builtins":
        return "c_musl_libc_and_builtins"
    return "std" if m.group(1) in std else m.group(1)
sizes = collections.Counter()
seen = set()
for line in out.splitlines():
    f = line.split(None, 3)
    # Aliases (pthread_create and __pthread_create) share an address: count it once.
    if len(f) == 4 and f[2] not in "bB" and f[0] not in seen:
        seen.add(f[0])
        sizes[crate_of(f[3])] += int(f[1], 16)
for c, n in sizes.most_common():
    print(f"size_dep_{c}_bytes={n}")
print(f"size_dep_unattributed_bytes={max(0, stripped - sum(sizes.values()))}")
PY
)

echo "binary_size_aarch64_bytes=$size"
echo "binary_size_aarch64_target=$AARCH64 ($(case $desc in *"statically linked"*) echo static ;; *) echo dynamic ;; esac))"
echo "instructions_per_event=$per_event"
echo "$deps"
verdict() { if [ "$1" -le "$2" ]; then echo "within"; else echo "OVER"; fi; }
echo "budget: size $(verdict "$size" 2097152) 2 MB; instructions/event $(verdict "$per_event" 5000) 5000"
