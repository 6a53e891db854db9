#!/bin/sh
# Runs files/leash.init against stand-ins of rc.common/procd.sh (rc.common
# here), uci and nft (on PATH), and checks the procd calls it makes.
#   sh openwrt-package/tests/init.sh
set -eu

here=$(cd "$(dirname "$0")" && pwd)
init=$here/../leash/files/leash.init
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/bin"
export CALLS="$work/calls" NFT_CALLS="$work/nft" UCI_KEEP='' UCI_TABLE=''

# uci: answers leash.@daemon[0].keep_on_exit / nft_table from the environment.
cat >"$work/bin/uci" <<'STUB'
#!/bin/sh
[ "$1" = -q ] && shift
case "$1 $2" in
	"get leash.@daemon[0].keep_on_exit") [ -n "$UCI_KEEP" ] && echo "$UCI_KEEP" ;;
	"get leash.@daemon[0].nft_table") [ -n "$UCI_TABLE" ] && echo "$UCI_TABLE" ;;
	*) exit 1 ;;
esac
STUB
# shellcheck disable=SC2016 # expands in the stub, not here
printf '#!/bin/sh\necho "nft $*" >>"$NFT_CALLS"\n' >"$work/bin/nft"
chmod +x "$work/bin/uci" "$work/bin/nft"
PATH=$work/bin:$PATH

fails=0
run() { : >"$CALLS"; : >"$NFT_CALLS"; sh "$here/rc.common" "$init" "$1"; }
expect() { # FILE LINE: LINE must be in FILE
	if grep -qxF -- "$2" "$1"; then echo "ok: $3"; else echo "FAIL: $3: no line '$2' in:"; sed 's/^/    /' "$1"; fails=$((fails + 1)); fi
}
expect_none() {
	if [ -s "$1" ]; then echo "FAIL: $2:"; sed 's/^/    /' "$1"; fails=$((fails + 1)); else echo "ok: $2"; fi
}

run start
expect "$CALLS" 'procd_open_instance|leash' "start opens an instance"
expect "$CALLS" 'procd_set_param|command|/usr/sbin/leash|daemon' "command line is /usr/sbin/leash daemon"
expect "$CALLS" 'procd_set_param|respawn|3600|5|5' "respawn"
expect "$CALLS" 'procd_set_param|stderr|1' "stderr to the log"
expect "$CALLS" 'procd_close_instance' "instance closed"
# Hardening: what procd hands to ujail, inside the one instance.
instance=$work/instance
sed -n '/^procd_open_instance|leash$/,/^procd_close_instance$/p' "$CALLS" >"$instance"
expect "$instance" 'procd_add_jail|leash' "a jail with no namespace or mount flag (ujail applies the capabilities)"
expect "$instance" 'procd_set_param|capabilities|/etc/capabilities/leash.json' "capabilities from /etc/capabilities/leash.json"
expect "$instance" 'procd_set_param|no_new_privs|1' "no_new_privs"
grep -E '^procd_add_jail_mount|^procd_set_param\|(user|group|seccomp)\|' "$instance" >"$work/extra" || :
expect_none "$work/extra" "no jail mounts, no user/group switch, no seccomp (runs as root with the bounding set cut)"
expect "$CALLS" 'procd_add_reload_trigger|leash' "uci commit leash reloads"

run reload
expect "$CALLS" 'procd_send_signal|leash|*|HUP' "reload sends SIGHUP"

run stop
expect "$NFT_CALLS" 'nft delete table inet leash' "stop deletes the table (keep_on_exit unset)"
UCI_KEEP=0 run stop
expect "$NFT_CALLS" 'nft delete table inet leash' "stop deletes the table (keep_on_exit 0)"
UCI_KEEP=1 run stop
expect_none "$NFT_CALLS" "stop leaves the table with keep_on_exit 1"
UCI_TABLE=other run stop
expect "$NFT_CALLS" 'nft delete table inet other' "stop deletes the configured nft_table"

if [ "$fails" -eq 0 ]; then echo "init.sh: ok"; else echo "init.sh: $fails FAILED"; exit 1; fi
