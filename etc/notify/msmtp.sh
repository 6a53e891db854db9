#!/bin/sh
# leash notifier: mails each alert through msmtp (a small SMTP client).
#
# Install: opkg install msmtp; set up /etc/msmtprc with your mail provider
# (host, port, tls on, auth on, user, password, from — see msmtp(1)); copy
# this script to /etc/leash/notify-mail.sh (mode 0755), then in leash.toml
#   [notify]
#   exec = "/etc/leash/notify-mail.sh"
#   on = ["QUARANTINE", "BLOCK"]
# (UCI: config notify / option exec '/etc/leash/notify-mail.sh' / list on '…'),
# and name the recipient in /etc/leash/notify.conf:
#   MAIL_TO=owner@example.org
#   MAIL_FROM=router@example.org     # optional (default: msmtp's "from")
#   MSMTP_ACCOUNT=default            # optional: an account of /etc/msmtprc
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

to=${MAIL_TO:-}
if [ -z "$to" ]; then
	echo "notify-mail: MAIL_TO is not set (in $conf or the environment)" >&2
	exit 2
fi

set -- -t
[ -n "${MSMTP_ACCOUNT:-}" ] && set -- "$@" -a "$MSMTP_ACCOUNT"

{
	printf 'To: %s\n' "$to"
	[ -n "${MAIL_FROM:-}" ] && printf 'From: %s\n' "$MAIL_FROM"
	printf 'Subject: leash on %s: %s\n' "${LEASH_ROUTER:-router}" "${LEASH_VERB:-alert}"
	printf 'Content-Type: text/plain; charset=utf-8\n\n'
	printf '%s\n\n' "${LEASH_LINE:-}"
	# The whole alert, as leash gave it.
	cat
	printf '\n'
} | msmtp "$@"
