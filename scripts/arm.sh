#!/usr/bin/env bash
# ARM builds of leash on an x86_64 Debian host, without Docker.
#
#   bash scripts/arm.sh build   release binaries for aarch64 and armv7
#   bash scripts/arm.sh test    the unit tests of both, run under qemu-user
#
# Installs what is missing (apt: cross gcc, ARM libc dev files, qemu-user-static;
# rustup: the targets). Linkers and qemu runners come from .cargo/config.toml.
#
# Targets: static musl where rustup has the target's std, else the glibc
# twin. ARM_TARGETS overrides the list, e.g.
#   ARM_TARGETS="aarch64-unknown-linux-gnu" bash scripts/arm.sh test
#
# qemu-user refuses NETLINK_NETFILTER sockets, so the kernel tests in
# daemon/src/netlink/kernel_tests.rs skip themselves (and LEASH_SKIP_KERNEL_TESTS=1
# is set as well); the lab tests stay on x86_64.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
export CARGO_TARGET_DIR=$TARGET_DIR

say() { printf 'arm.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "need root for: $*"; fi
}

apt_missing=()
need_cmd() { command -v "$1" >/dev/null 2>&1 || apt_missing+=("$2"); }
need_file() { [ -e "$1" ] || apt_missing+=("$2"); }

# Host tools every ARM build needs (the gnu twins link with gcc; qemu runs tests).
ensure_apt() {
    apt_missing=()
    need_cmd aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu
    need_cmd arm-linux-gnueabihf-gcc gcc-arm-linux-gnueabihf
    need_file /usr/aarch64-linux-gnu/lib/libc.so.6 libc6-dev-arm64-cross
    need_file /usr/arm-linux-gnueabihf/lib/libc.so.6 libc6-dev-armhf-cross
    need_file /usr/aarch64-linux-gnu/include/stdio.h libc6-dev-arm64-cross
    need_file /usr/arm-linux-gnueabihf/include/stdio.h libc6-dev-armhf-cross
    need_cmd qemu-aarch64-static qemu-user-static
    need_cmd qemu-arm-static qemu-user-static
    need_cmd file file
    if [ ${#apt_missing[@]} -gt 0 ]; then
        mapfile -t apt_missing < <(printf '%s\n' "${apt_missing[@]}" | sort -u)
        say "installing with apt: ${apt_missing[*]}"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
    fi
}

have_target() { rustup target list --installed 2>/dev/null | grep -qx "$1"; }

add_target() {
    have_target "$1" && return 0
    say "rustup target add $1"
    rustup target add "$1" >/dev/null 2>&1
}

# Picks musl (static) per architecture when its std can be had, else the gnu twin.
choose_targets() {
    if [ -n "${ARM_TARGETS:-}" ]; then
        read -r -a TARGETS <<<"$ARM_TARGETS"
        for t in "${TARGETS[@]}"; do add_target "$t" || die "rustup cannot add $t"; done
        return
    fi
    TARGETS=()
    local musl gnu
    for pair in aarch64-unknown-linux-musl:aarch64-unknown-linux-gnu \
        armv7-unknown-linux-musleabihf:armv7-unknown-linux-gnueabihf; do
        musl=${pair%%:*} gnu=${pair##*:}
        if add_target "$musl"; then
            TARGETS+=("$musl")
        else
            say "rustup has no std for $musl here; building the glibc twin $gnu (dynamically linked)"
            add_target "$gnu" || die "rustup cannot add $gnu either"
            TARGETS+=("$gnu")
        fi
    done
}

runner() {
    case $1 in
        aarch64-*-gnu) echo "qemu-aarch64-static -L /usr/aarch64-linux-gnu" ;;
        aarch64-*) echo "qemu-aarch64-static" ;;
        arm*-gnueabihf) echo "qemu-arm-static -L /usr/arm-linux-gnueabihf" ;;
        arm*) echo "qemu-arm-static" ;;
        *) die "no runner for $1" ;;
    esac
}

linkage() {
    local out
    out=$(file -b "$1")
    case $out in
        *"statically linked"* | *"static-pie linked"*) echo static ;;
        *"dynamically linked"*) echo dynamic ;;
        *) echo unknown ;;
    esac
}

build() {
    local summary=() t bin size link version
    for t in "${TARGETS[@]}"; do
        say "cargo build --release --target $t"
        cargo build --locked --release -p leash --target "$t"
        bin=$TARGET_DIR/$t/release/leash
        size=$(stat -c %s "$bin")
        link=$(linkage "$bin")
        # shellcheck disable=SC2046 # the runner is a command line
        version=$($(runner "$t") "$bin" --version)
        case $version in
            *"($t)") ;;
            *) die "$bin --version under qemu said \"$version\", expected the target $t" ;;
        esac
        summary+=("$t: $bin $size bytes, $link, \"$version\"")
    done
    printf 'arm.sh build: ok\n'
    printf '  %s\n' "${summary[@]}"
}

test_() {
    local t log rc passed failed skipped status=0 lines=()
    export LEASH_SKIP_KERNEL_TESTS=1
    for t in "${TARGETS[@]}"; do
        log=$TARGET_DIR/arm-test-$t.log
        mkdir -p "$TARGET_DIR"
        say "cargo test --target $t (under $(runner "$t" | cut -d' ' -f1)); log: $log"
        rc=0
        cargo test --locked -p leash --target "$t" -- --show-output >"$log" 2>&1 || rc=$?
        passed=$(sed -n 's/^test result: .* \([0-9]\+\) passed.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
        failed=$(sed -n 's/^test result: .* \([0-9]\+\) failed.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
        skipped=$(grep -c '^skipped:' "$log" || true)
        if [ "$rc" -ne 0 ] || ! grep -q '^test result: ok' "$log"; then
            status=1
            grep -E '^(test .* FAILED|failures:|error(\[|:))' "$log" | head -20 >&2 || true
            tail -5 "$log" >&2
        fi
        lines+=("$t: $passed passed, $failed failed, $skipped kernel tests skipped")
    done
    local joined
    joined=$(printf '%s; ' "${lines[@]}")
    if [ "$status" -eq 0 ]; then
        printf 'arm.sh test: ok (%s)\n' "${joined%; }"
    else
        printf 'arm.sh test: FAILED (%s)\n' "${joined%; }"
    fi
    return "$status"
}

case ${1:-} in
    build | test)
        command -v cargo >/dev/null || die "cargo not found (install Rust with rustup)"
        command -v rustup >/dev/null || die "rustup not found: it is needed to add the ARM targets"
        ensure_apt
        choose_targets
        if [ "$1" = build ]; then build; else test_; fi
        ;;
    *)
        echo "usage: bash scripts/arm.sh build|test" >&2
        exit 2
        ;;
esac
