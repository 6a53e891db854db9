#!/bin/sh
# leash notifier: sends each alert to a ntfy topic (https://ntfy.sh or your
# own ntfy server), so that it arrives on a phone.
#
# Install: copy to /etc/leash/notify-ntfy.sh (mode 0755), then in leash.toml
#   [notify]
#   exec = "/etc/leash/notify-ntfy.sh"
#   on = ["QUARANTINE", "BLOCK", "ALERT"]
# (UCI: config notify / option exec '/etc/leash/notify-ntfy.sh' / list on '…'),
# and write the topic URL into /etc/leash/notify.conf (mode 0600):
#   NTFY_URL=https://ntfy.sh/my-secret-topic-name
#   NTFY_TOKEN=tk_...        # optional: an access token of a protected topic
# Needs curl (opkg install curl ca-bundle).
#
# leash runs this once per alert: the alert as one JSON object on stdin, and
# LEASH_VERB, LEASH_SEVERITY, LEASH_ROUTER and LEASH_LINE (the syslog line)
# in the environment. It is killed after [notify] exec_timeout (10s); a
# non-zero exit is counted as a failure (`leash status --json`:
# notify_exec_failed).
set -u

conf=${LEASH_NOTIFY_CONF:-/etc/leash/notify.conf}
# shellcheck source=/dev/null
[ -r "$conf" ] && . "$conf"

url=${NTFY_URL:-}
if [ -z "$url" ]; then
	echo "notify-ntfy: NTFY_URL is not set (in $conf or the environment)" >&2
	exit 2
fi

case ${LEASH_VERB:-} in
	QUARANTINE) priority=urgent tags=rotating_light ;;
	BLOCK) priority=high tags=no_entry ;;
	*) priority=default tags=warning ;;
esac

if [ -n "${NTFY_TOKEN:-}" ]; then
	set -- -H "Authorization: Bearer $NTFY_TOKEN"
else
	set --
fi

# The JSON on stdin is not needed: the line says it in words.
exec curl -fsS -m 8 -o /dev/null "$@" \
	-H "Title: leash on ${LEASH_ROUTER:-router}: ${LEASH_VERB:-alert}" \
	-H "Priority: $priority" \
	-H "Tags: $tags" \
	--data-binary "${LEASH_LINE:-}" \
	"$url"
