#!/usr/bin/env bash
# Checks of openwrt-package/ that need no OpenWrt build tree:
#   1. shellcheck of the init script, the rpcd plugin, test.sh, the test stand-ins
#      and the example notifiers (etc/notify);
#   2. the init script run against stand-ins of rc.common/procd.sh, uci and
#      nft (openwrt-package/tests/init.sh);
#   3. files/leash.config read by leash's own UCI reader (`leash check`, and
#      the unit tests config::tests::openwrt_package_*);
#   4. the Makefile carries what a Rust package of the feed needs, and the
#      capabilities file (files/leash.capabilities) lists exactly what the
#      daemon keeps;
#   5. luci-app-leash: its Makefile on luci.mk, valid menu and ACL JSON, the
#      ACL granting exactly the plugin's methods, the views in place.
# Installs shellcheck with apt when missing.
#   bash scripts/package-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PKG=openwrt-package/leash
fails=0
ok() { printf 'ok: %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*"; fails=$((fails + 1)); }

if ! command -v shellcheck >/dev/null; then
    echo "package-check: installing shellcheck" >&2
    if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null
fi

# 1. OpenWrt's /bin/sh is busybox ash; dash is the closest dialect shellcheck knows.
if shellcheck -s dash "$PKG/files/leash.init" "$PKG/files/leash.rpcd" "$PKG/test.sh" openwrt-package/tests/init.sh openwrt-package/tests/rc.common etc/notify/ntfy.sh etc/notify/msmtp.sh; then
    ok "shellcheck"
else
    fail "shellcheck"
fi

# 2.
if out=$(sh openwrt-package/tests/init.sh 2>&1); then
    ok "init script against procd stand-ins ($(grep -c '^ok:' <<<"$out") checks)"
else
    printf '%s\n' "$out"
    fail "init script against procd stand-ins"
fi

# 3.
if out=$(cargo run --locked -q -p leash -- check --config "$PKG/files/leash.config" 2>&1); then
    ok "leash check --config $PKG/files/leash.config: $(head -1 <<<"$out")"
else
    printf '%s\n' "$out"
    fail "leash check --config $PKG/files/leash.config"
fi
if out=$(cargo test --locked -q -p leash --lib openwrt_package 2>&1) && grep -q '2 passed' <<<"$out"; then
    ok "unit tests config::tests::openwrt_package_*"
else
    printf '%s\n' "$out" | tail -20
    fail "unit tests config::tests::openwrt_package_*"
fi

# 4. One regex per requirement, matched against the Makefile.
mk=$PKG/Makefile
check_mk() { # DESCRIPTION REGEX
    if grep -Eq -- "$2" "$mk"; then ok "Makefile: $1"; else fail "Makefile: $1 (no line matching $2)"; fi
}
check_mk "PKG_NAME" '^PKG_NAME:=leash$'
check_mk "PKG_VERSION = the workspace version" "^PKG_VERSION:=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)\$"
check_mk "PKG_RELEASE" '^PKG_RELEASE:=[0-9]+$'
check_mk "PKG_LICENSE" '^PKG_LICENSE:=GPL-2.0-only$'
check_mk "PKG_BUILD_DEPENDS rust/host" '^PKG_BUILD_DEPENDS:=.*rust/host'
check_mk "package.mk include" '^include \$\(INCLUDE_DIR\)/package\.mk$'
check_mk "rust-package.mk include" '^include \.\./\.\./lang/rust/rust-package\.mk$'
check_mk "DEPENDS with RUST_ARCH_DEPENDS" '^  DEPENDS:=\$\(RUST_ARCH_DEPENDS\)'
# DEPENDS with its continuation lines joined, one word a line.
depends=$(sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$mk" | sed -n 's/^[[:space:]]*DEPENDS:=//p' | tr -s '[:blank:]' '\n')
# kmod-nft-queue pulls in kmod-nfnetlink-queue (netfilter.mk); procd-ujail
# is what applies the init script's capabilities and no_new_privs.
for dep in nftables kmod-nft-core kmod-nf-conntrack-netlink kmod-nfnetlink-log kmod-nft-queue procd-ujail; do
    if grep -qxF -- "+$dep" <<<"$depends"; then ok "Makefile: DEPENDS +$dep"; else fail "Makefile: DEPENDS lacks +$dep"; fi
done
check_mk "conffiles section" '^define Package/leash/conffiles$'
for f in /etc/config/leash /etc/leash/leash.toml /etc/leash/lists/; do
    check_mk "conffiles $f" "^${f//./\\.}"
done
check_mk "Build/Compile of the daemon member" '^[[:space:]]+\$\(call Build/Compile/Cargo,daemon\)$'
check_mk "binary installed as /usr/sbin/leash" 'INSTALL_BIN.*/bin/leash \$\(1\)/usr/sbin/leash$'
check_mk "init script installed" 'INSTALL_BIN\) \./files/leash\.init \$\(1\)/etc/init\.d/leash$'
check_mk "capabilities installed as /etc/capabilities/leash.json" 'INSTALL_DATA\) \./files/leash\.capabilities \$\(1\)/etc/capabilities/leash\.json$'
check_mk "rpcd plugin installed as /usr/libexec/rpcd/leash" 'INSTALL_BIN\) \./files/leash\.rpcd \$\(1\)/usr/libexec/rpcd/leash$'
check_mk "UCI defaults installed" 'INSTALL_CONF\) \./files/leash\.config \$\(1\)/etc/config/leash$'
check_mk "BuildPackage" '^\$\(eval \$\(call BuildPackage,leash\)\)$'
if git ls-files --error-unmatch Cargo.lock >/dev/null 2>&1; then ok "Cargo.lock committed (--locked)"; else fail "Cargo.lock not committed"; fi
if [ -f "$PKG/test.sh" ]; then ok "test.sh present"; else fail "test.sh missing"; fi
if [ -x "$PKG/files/leash.rpcd" ]; then ok "rpcd plugin executable"; else fail "$PKG/files/leash.rpcd missing or not executable"; fi
# The plugin must hand rpcd's protocol to the installed binary.
if grep -q '^exec "${LEASH_BIN:-/usr/sbin/leash}" rpcd "$@"$' "$PKG/files/leash.rpcd"; then
    ok "rpcd plugin execs /usr/sbin/leash rpcd"
else
    fail "rpcd plugin does not exec /usr/sbin/leash rpcd"
fi
if out=$(LEASH_BIN=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/leash \
        sh "$PKG/files/leash.rpcd" list) && python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert isinstance(d, dict) and len(d) == 11, d' "$out"; then
    ok "rpcd plugin list: 11 methods"
else
    fail "rpcd plugin list (build the binary first: cargo build -p leash): $out"
fi

# 4b. The capability sets procd's ujail gives the daemon (-C, read by
# jail/capabilities.c: five lists of names, an absent list meaning "leave as
# is"): all five present, CAP_NET_ADMIN alone where the daemon holds it,
# nothing inheritable or ambient (as root, what it execs gets the bounding
# set), every name one the kernel headers know; the init script points at
# the installed path.
caps_json=$PKG/files/leash.capabilities
if out=$(python3 - "$caps_json" <<'PY' 2>&1
import json, os, re, sys
caps = json.load(open(sys.argv[1]))
want = {"bounding": ["CAP_NET_ADMIN"], "effective": ["CAP_NET_ADMIN"], "permitted": ["CAP_NET_ADMIN"],
        "inheritable": [], "ambient": []}
assert caps == want, f"{caps} != {want}"
hdr = "/usr/include/linux/capability.h"
if os.path.exists(hdr):
    known = set(re.findall(r"^#define (CAP_[A-Z_]+)\s+\d+", open(hdr).read(), re.M))
    names = {n for v in caps.values() for n in v}
    assert names <= known, f"unknown capabilities {names - known}"
PY
); then
    ok "$caps_json: valid JSON, bounding/effective/permitted = CAP_NET_ADMIN, inheritable/ambient empty"
else
    printf '%s\n' "$out"
    fail "$caps_json"
fi
if grep -qx 'CAPS=/etc/capabilities/leash.json' "$PKG/files/leash.init"; then
    ok "init script reads the installed capabilities file"
else
    fail "init script: no CAPS=/etc/capabilities/leash.json"
fi

# 5.
LUCI=openwrt-package/luci-app-leash
lmk=$LUCI/Makefile
check_lmk() { # DESCRIPTION REGEX
    if grep -Eq -- "$2" "$lmk"; then ok "luci Makefile: $1"; else fail "luci Makefile: $1 (no line matching $2)"; fi
}
check_lmk "LUCI_TITLE" '^LUCI_TITLE:=.+'
check_lmk "LUCI_DEPENDS +leash" '^LUCI_DEPENDS:=.*\+leash( |$)'
check_lmk "PKG_LICENSE" '^PKG_LICENSE:=GPL-2.0-only$'
check_lmk "luci.mk include" '^include \.\./\.\./luci\.mk$'
if grep -q 'BuildPackage,' "$lmk"; then fail "luci Makefile: luci.mk calls BuildPackage itself"; else ok "luci Makefile: no BuildPackage of its own"; fi
for v in overview devices destinations settings; do
    f=$LUCI/htdocs/luci-static/resources/view/leash/$v.js
    if [ -f "$f" ] && head -2 "$f" | grep -qx "'require view';" && grep -q 'return view.extend(' "$f"; then
        ok "luci view $v.js"
    else
        fail "luci view $v.js missing or not a LuCI view"
    fi
done
if command -v node >/dev/null; then
    for f in "$LUCI"/htdocs/luci-static/resources/view/leash/*.js; do
        # A view is a function body (LuCI wraps it): check its syntax as one.
        if node -e 'new Function(require("fs").readFileSync(process.argv[1], "utf8"))' "$f"; then ok "syntax $f"; else fail "syntax $f"; fi
    done
fi
plugin_list=$(LEASH_BIN=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/leash \
    sh "$PKG/files/leash.rpcd" list 2>/dev/null || echo '{}')
if out=$(python3 - "$LUCI" "$plugin_list" <<'PY' 2>&1
import json, sys
luci, methods = sys.argv[1], set(json.loads(sys.argv[2]))
menu = json.load(open(f"{luci}/root/usr/share/luci/menu.d/luci-app-leash.json"))
acl = json.load(open(f"{luci}/root/usr/share/rpcd/acl.d/luci-app-leash.json"))
assert menu["admin/services/leash"]["depends"]["acl"] == ["luci-app-leash"], "menu depends on the ACL"
views = {v["action"]["path"] for k, v in menu.items() if v["action"]["type"] == "view"}
assert views == {f"leash/{v}" for v in ("overview", "devices", "destinations", "settings")}, views
app = acl["luci-app-leash"]
granted = app["read"]["ubus"]["leash"] + app["write"]["ubus"]["leash"]
assert len(granted) == len(set(granted)), f"a method granted twice: {granted}"
assert set(granted) == methods and len(methods) == 11, f"ACL {sorted(granted)} != plugin list {sorted(methods)}"
assert set(app["write"]["ubus"]["leash"]) == {"consent", "revoke", "quarantine", "release", "reload"}, "writes"
assert set(app["read"].keys()) | set(app["write"].keys()) <= {"ubus", "uci"}
assert app["read"]["uci"] == ["leash"] and app["write"]["uci"] == ["leash"], "the leash UCI config"
PY
); then
    ok "luci menu.d and acl.d JSON valid; ACL grants exactly the plugin's 11 methods and UCI leash"
else
    printf '%s\n' "$out"
    fail "luci menu.d / acl.d"
fi

if [ "$fails" -eq 0 ]; then
    echo "package-check: ok"
else
    echo "package-check: $fails FAILED"
    exit 1
fi
