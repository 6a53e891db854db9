#!/usr/bin/env bash
# Router builds of leash on an x86_64 Debian host, without Docker.
#
#   bash scripts/arm.sh build      stripped static release binaries of the router targets
#   bash scripts/arm.sh test       the unit tests under qemu-user (what test.sh runs)
#   bash scripts/arm.sh test-all   the same, with the MIPS unit tests as well
#
# The targets (ARM_TARGETS overrides the list, e.g.
#   ARM_TARGETS="aarch64-unknown-linux-gnu" bash scripts/arm.sh test):
#
#   router targets, static musl:
#     aarch64-unknown-linux-musl      std from rustup, linked by rust-lld with its own musl
#     armv7-unknown-linux-musleabihf  std built here (-Zbuild-std), Debian's musl-dev:armhf
#     mipsel-unknown-linux-musl       std built here, musl built here from Debian's source
#     mips-unknown-linux-musl         (soft-float, as OpenWrt's MIPS targets are)
#   big-endian test target:
#     powerpc-unknown-linux-gnu       32-bit big-endian like MIPS routers; std from rustup
#
# rustup serves no std for armv7 musl and none for MIPS (tier 3), so those are
# built with `-Zbuild-std=std,panic_abort` (RUSTC_BOOTSTRAP=1, the rust-src
# component) and linked by rust-lld against a directory this script fills in
# target/musl-link/TARGET: musl's crt objects and libc.a, crtbegin/crtend and
# libgcc_eh.a (as libunwind.a) from Debian's cross gcc.
#
# `test` runs the unit tests of every target; on MIPS it skips the three
# heaviest property tests (MIPS_SKIP: sizes and floods, not byte order or word
# size, and 2½ of MIPS's 3 minutes under qemu), which the other three targets
# run whole; `test-all` runs them on MIPS too. MIPS also builds its binary and
# runs `--version` under qemu.
#
# Installs what is missing when run as root (apt: cross gcc, musl, qemu-user-static;
# rustup: the targets and rust-src). Linkers and qemu runners come from
# .cargo/config.toml. qemu-user refuses NETLINK_NETFILTER sockets, so the kernel
# tests in daemon/src/netlink/kernel_tests.rs skip themselves (and
# LEASH_SKIP_KERNEL_TESTS=1 is set as well); the lab tests stay on x86_64.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
export CARGO_TARGET_DIR=$TARGET_DIR

ROUTER_TARGETS="aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf mipsel-unknown-linux-musl mips-unknown-linux-musl"
BIG_ENDIAN_TARGET="powerpc-unknown-linux-gnu"
# Under qemu-mips a debug build runs these for 70, 51 and 25 s (of 146).
MIPS_SKIP="policy::domainset::tests::agrees_with_a_hash_set_on_big_sets engine::tests::a_flood_of_neighbours_never_evicts_pinned_devices bounded::tests::large_maps_stay_fast"

say() { printf 'arm.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "need root for: $*"; fi
}

apt_updated=
apt_install() {
    [ $# -gt 0 ] || return 0
    say "installing with apt: $*"
    if [ -z "$apt_updated" ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_updated=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Debian's multiarch triplet and gcc prefix of a target.
gcc_prefix() {
    case $1 in
        aarch64-*) echo aarch64-linux-gnu ;;
        armv7-*) echo arm-linux-gnueabihf ;;
        mipsel-*) echo mipsel-linux-gnu ;;
        mips-*) echo mips-linux-gnu ;;
        powerpc-*) echo powerpc-linux-gnu ;;
        *) die "no gcc for $1" ;;
    esac
}

# Whether rustup serves the target's std, or it is built with -Zbuild-std.
build_std() {
    case $1 in
        armv7-unknown-linux-musleabihf | mips*-unknown-linux-musl) return 0 ;;
        *) return 1 ;;
    esac
}

runner() {
    case $1 in
        aarch64-*-gnu) echo "qemu-aarch64-static -L /usr/aarch64-linux-gnu" ;;
        aarch64-*) echo "qemu-aarch64-static" ;;
        arm*-gnueabihf) echo "qemu-arm-static -L /usr/arm-linux-gnueabihf" ;;
        arm*) echo "qemu-arm-static" ;;
        mipsel-*) echo "qemu-mipsel-static" ;;
        mips-*) echo "qemu-mips-static" ;;
        powerpc-*-gnu) echo "qemu-ppc-static -L /usr/powerpc-linux-gnu" ;;
        *) die "no runner for $1" ;;
    esac
}

# Host packages the targets need.
ensure_apt() {
    local need=() t p
    command -v file >/dev/null || need+=(file)
    for t in "${TARGETS[@]}"; do
        p=$(gcc_prefix "$t")
        command -v "$(runner "$t" | cut -d' ' -f1)" >/dev/null || need+=(qemu-user-static)
        case $t in
            aarch64-unknown-linux-musl) ;;
            *) command -v "$p-gcc" >/dev/null || need+=("gcc-$p") ;;
        esac
        case $t in
            *-gnu | *-gnueabihf)
                [ -e "/usr/$p/include/stdio.h" ] || need+=("libc6-dev-$(dpkg_arch "$t")-cross") ;;
            armv7-unknown-linux-musleabihf)
                if ! dpkg --print-foreign-architectures | grep -qx armhf; then
                    say "dpkg --add-architecture armhf (for musl-dev:armhf)"
                    as_root dpkg --add-architecture armhf
                    apt_updated=
                fi
                [ -e /usr/lib/arm-linux-musleabihf/libc.a ] || need+=(musl-dev:armhf) ;;
            mips*-unknown-linux-musl)
                command -v "$p-g++" >/dev/null || need+=("g++-$p")
                command -v make >/dev/null || need+=(make)
                command -v dpkg-source >/dev/null || need+=(dpkg-dev) ;;
        esac
    done
    mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u | sed '/^$/d')
    apt_install "${need[@]}"
}

dpkg_arch() {
    case $1 in
        aarch64-*) echo arm64 ;;
        arm*) echo armhf ;;
        powerpc-*) echo powerpc ;;
        *) die "no Debian architecture for $1" ;;
    esac
}

have_target() { rustup target list --installed 2>/dev/null | grep -qx "$1"; }

ensure_rustup() {
    local t
    for t in "${TARGETS[@]}"; do
        if build_std "$t"; then
            if ! rustup component list --installed 2>/dev/null | grep -q '^rust-src'; then
                say "rustup component add rust-src (for -Zbuild-std)"
                rustup component add rust-src >/dev/null 2>&1 || die "rustup cannot add rust-src"
            fi
        elif ! have_target "$t"; then
            say "rustup target add $t"
            rustup target add "$t" >/dev/null 2>&1 || die "rustup cannot add $t"
        fi
    done
}

# musl for MIPS, soft-float, built from Debian's source package (Debian ships
# no musl-dev for big-endian mips, and its mipsel one is hard-float).
musl_from_source() {
    local t=$1 p out src
    p=$(gcc_prefix "$t")
    out=$TARGET_DIR/musl/$t
    [ -e "$out/lib/libc.a" ] && return 0
    src=$TARGET_DIR/musl/src
    local srcdir
    srcdir=$(find "$src" -maxdepth 1 -type d -name 'musl-*' 2>/dev/null | head -1)
    if [ -z "$srcdir" ] || [ ! -x "$srcdir/configure" ]; then
        if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
            say "adding Debian's deb-src lines (apt-get source musl)"
            # shellcheck source=/dev/null
            . /etc/os-release
            printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$VERSION_CODENAME" |
                as_root tee /etc/apt/sources.list.d/debian-src.sources >/dev/null
            apt_updated=
        fi
        [ -n "$apt_updated" ] || { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq; apt_updated=1; }
        mkdir -p "$src"
        (cd "$src" && apt-get source -qq musl >/dev/null 2>&1) || die "apt-get source musl failed"
        srcdir=$(find "$src" -maxdepth 1 -type d -name 'musl-*' | head -1)
    fi
    say "building musl for $t ($p-gcc -msoft-float)"
    rm -rf "$out.build"
    mkdir -p "$out.build"
    (
        cd "$out.build"
        "$srcdir/configure" --target="$p" CC="$p-gcc" CFLAGS="-O2 -msoft-float" \
            --disable-shared --prefix="$out" >configure.log 2>&1
        make -j"$(nproc)" >make.log 2>&1
        make install >>make.log 2>&1
    ) || die "building musl for $t failed: see $out.build/"
    rm -rf "$out.build"
}

# For MIPS, the unwinder and crtbegin/crtend must be soft-float too (rust-lld
# refuses to mix float ABIs), and Debian's libgcc_eh.a wants glibc's
# _dl_find_object: build LLVM's libunwind from the rust-src component (the
# unwinder rustup's own musl targets ship) against the musl built here, and
# empty crtbegin/crtend objects (Rust needs nothing from them).
mips_runtime() {
    local t=$1 p out u cf o f
    p=$(gcc_prefix "$t")
    out=$TARGET_DIR/musl/$t/lib
    [ -e "$out/libunwind.a" ] && [ -e "$out/crtend.o" ] && return 0
    u=$(rustc --print sysroot)/lib/rustlib/src/rust/src/llvm-project/libunwind
    [ -d "$u/src" ] || die "no libunwind source in rust-src ($u)"
    say "building LLVM libunwind (rust-src) for $t"
    o=$TARGET_DIR/musl/$t/unwind
    rm -rf "$o"
    mkdir -p "$o"
    cf=(-msoft-float -O2 -fPIC -nostdinc -isystem "$TARGET_DIR/musl/$t/include" -isystem "$("$p-gcc" -print-file-name=include)"
        -I "$u/include" -D_LIBUNWIND_IS_NATIVE_ONLY -DNDEBUG -D_LIBUNWIND_DISABLE_VISIBILITY_ANNOTATIONS
        -funwind-tables -fvisibility=hidden -fstrict-aliasing)
    for f in UnwindLevel1.c UnwindLevel1-gcc-ext.c Unwind-sjlj.c; do
        "$p-gcc" "${cf[@]}" -std=c99 -c "$u/src/$f" -o "$o/${f%.*}.o"
    done
    for f in UnwindRegistersRestore.S UnwindRegistersSave.S; do
        "$p-gcc" "${cf[@]}" -c "$u/src/$f" -o "$o/${f%.*}.o"
    done
    for f in libunwind.cpp Unwind-EHABI.cpp; do
        "$p-g++" "${cf[@]}" -std=c++17 -nostdinc++ -fno-exceptions -fno-rtti -c "$u/src/$f" -o "$o/${f%.*}.o"
    done
    rm -f "$out/libunwind.a"
    "$p-ar" rcs "$out/libunwind.a" "$o"/*.o
    : >"$o/empty.c"
    for f in crtbegin.o crtbeginS.o crtbeginT.o crtend.o crtendS.o; do
        "$p-gcc" -msoft-float -c "$o/empty.c" -o "$out/$f"
    done
}

# The directory rust-lld takes crt objects and libraries from (-L native=…).
musl_link_dir() {
    local t=$1 dir libc gcc f
    dir=$TARGET_DIR/musl-link/$t
    case $t in
        armv7-*)
            libc=/usr/lib/arm-linux-musleabihf
            gcc=$(dirname "$("$(gcc_prefix "$t")-gcc" -print-libgcc-file-name)")
            ;;
        mips*)
            musl_from_source "$t"
            mips_runtime "$t"
            libc=$TARGET_DIR/musl/$t/lib gcc=$libc
            ;;
    esac
    mkdir -p "$dir"
    for f in crt1.o Scrt1.o rcrt1.o crti.o crtn.o libc.a libm.a libpthread.a libdl.a librt.a libutil.a libresolv.a; do
        ln -sf "$libc/$f" "$dir/$f"
    done
    for f in crtbegin.o crtbeginS.o crtbeginT.o crtend.o crtendS.o; do
        ln -sf "$gcc/$f" "$dir/$f"
    done
    case $t in
        # Rust's unwind crate links libunwind.a for static musl; on ARM,
        # gcc's EHABI unwinder provides the same _Unwind_* interface.
        armv7-*) ln -sf "$gcc/libgcc_eh.a" "$dir/libunwind.a" ;;
        mips*) ln -sf "$libc/libunwind.a" "$dir/libunwind.a" ;;
    esac
    echo "$dir"
}

# Runs cargo for target $1, with -Zbuild-std and the musl link directory where needed.
cargo_for() {
    local t=$1 var dir
    shift
    if build_std "$t"; then
        dir=$(musl_link_dir "$t")
        var=CARGO_TARGET_$(echo "$t" | tr 'a-z-' 'A-Z_')_RUSTFLAGS
        env RUSTC_BOOTSTRAP=1 "$var=-C target-feature=+crt-static -C link-self-contained=yes -L native=$dir" \
            cargo "$1" --target "$t" -Zbuild-std=std,panic_abort "${@:2}"
    else
        cargo "$1" --target "$t" "${@:2}"
    fi
}

choose_targets() {
    if [ -n "${ARM_TARGETS:-}" ]; then
        read -r -a TARGETS <<<"$ARM_TARGETS"
    else
        read -r -a TARGETS <<<"$ROUTER_TARGETS $BIG_ENDIAN_TARGET"
    fi
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

# Builds the binary of $1 (release, or the dev profile with $2 = debug) and
# checks --version under qemu; prints a summary line.
build_one() {
    local t=$1 profile=${2:-release} bin size link version
    if [ "$profile" = release ]; then
        say "cargo build --release --target $t"
        cargo_for "$t" build --locked --release -p leash >&2
    else
        say "cargo build --target $t (dev profile)"
        cargo_for "$t" build --locked -p leash >&2
    fi
    bin=$TARGET_DIR/$t/$profile/leash
    size=$(stat -c %s "$bin")
    link=$(linkage "$bin")
    # shellcheck disable=SC2046 # the runner is a command line
    version=$($(runner "$t") "$bin" --version)
    case $version in
        *"($t)") ;;
        *) die "$bin --version under qemu said \"$version\", expected the target $t" ;;
    esac
    echo "$t: $bin $size bytes, $link, \"$version\""
}

build() {
    local summary=() t
    for t in "${TARGETS[@]}"; do
        summary+=("$(build_one "$t")")
    done
    printf 'arm.sh build: ok\n'
    printf '  %s\n' "${summary[@]}"
}

test_() {
    local all=$1 t log rc passed failed skipped status=0 lines=() skip note
    export LEASH_SKIP_KERNEL_TESTS=1
    mkdir -p "$TARGET_DIR"
    for t in "${TARGETS[@]}"; do
        skip=()
        note=""
        if [ "$all" = no ] && [[ $t == mips* ]]; then
            for n in $MIPS_SKIP; do skip+=(--skip "$n"); done
            note=" ($(wc -w <<<"$MIPS_SKIP") heavy property tests left to test-all)"
        fi
        log=$TARGET_DIR/arm-test-$t.log
        say "cargo test --target $t (under $(runner "$t" | cut -d' ' -f1)); log: $log"
        rc=0
        cargo_for "$t" test --locked -p leash -- --show-output "${skip[@]}" >"$log" 2>&1 || rc=$?
        passed=$(sed -n 's/^test result: .* \([0-9]\+\) passed.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
        failed=$(sed -n 's/^test result: .* \([0-9]\+\) failed.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
        skipped=$(grep -c '^skipped:' "$log" || true)
        if [ "$rc" -ne 0 ] || ! grep -q '^test result: ok' "$log"; then
            status=1
            grep -E '^(test .* FAILED|failures:|error(\[|:))' "$log" | head -20 >&2 || true
            tail -5 "$log" >&2
        fi
        lines+=("$t: $passed passed, $failed failed, $skipped kernel tests skipped$note")
        if [[ $t == mips* ]]; then
            # The binary itself, static, starting under qemu (the dev profile
            # reuses the tests' std build).
            lines+=("$(build_one "$t" debug | sed 's/, "leash .*/, --version ok under qemu/')")
        fi
    done
    if [ "$status" -eq 0 ]; then
        printf 'arm.sh test: ok\n'
    else
        printf 'arm.sh test: FAILED\n'
    fi
    printf '  %s\n' "${lines[@]}"
    return "$status"
}

case ${1:-} in
    build | test | test-all)
        command -v cargo >/dev/null || die "cargo not found (install Rust with rustup)"
        command -v rustup >/dev/null || die "rustup not found: it is needed to add the targets"
        choose_targets
        ensure_apt
        ensure_rustup
        case $1 in
            build) build ;;
            test) test_ no ;;
            test-all) test_ yes ;;
        esac
        ;;
    *)
        echo "usage: bash scripts/arm.sh build|test|test-all" >&2
        exit 2
        ;;
esac
