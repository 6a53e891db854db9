#!/bin/sh
# Runs every cargo-fuzz target for SECONDS each (default 60), one after
# the other (a router-class build box has few cores), and prints per
# target the executions and whether libFuzzer found a crash.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Only the stable toolchain is needed: RUSTC_BOOTSTRAP lets cargo-fuzz
# pass its nightly-only flags. Seeds live in fuzz/seeds/<target>/ (kept
# in git); they are copied into fuzz/corpus/<target>/ (ignored), which
# keeps growing between runs. Crashing inputs land in
# fuzz/artifacts/<target>/; add each as a regression unit test.
set -u
cd "$(dirname "$0")/../fuzz" || exit 2
secs=${1:-60}
[ $# -gt 0 ] && shift
targets=${*:-"dns_packet dns_rewrite nflog_message nfqueue_message conntrack_message nft_event route_message list_file config_toml config_uci"}
export RUSTC_BOOTSTRAP=1
# A fresh machine has no cargo-fuzz: install it (crates.io) rather than fail.
cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked || exit 2

RUSTC_BOOTSTRAP=1 cargo fuzz build >/dev/null 2>&1 || RUSTC_BOOTSTRAP=1 cargo fuzz build -s none || exit 2
status=0
# Inputs libFuzzer saved in $1: crashes, out-of-memory, timeouts, leaks.
findings() {
    find "$1" -maxdepth 1 \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'leak-*' \) | wc -l
}
for t in $targets; do
    mkdir -p "corpus/$t" "artifacts/$t"
    [ -d "seeds/$t" ] && cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null
    log="artifacts/$t/last-run.log"
    before=$(findings "artifacts/$t")
    cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1
    rc=$?
    after=$(findings "artifacts/$t")
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    if [ "$rc" -ne 0 ] || [ "$after" -gt "$before" ]; then
        verdict="CRASH (see $log, fuzz/artifacts/$t/)"
        status=1
    else
        verdict="no crash"
    fi
    printf '%-18s %6ss  execs %-12s %s\n' "$t" "$secs" "${execs:-?}" "$verdict"
done
exit $status
