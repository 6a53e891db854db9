#!/bin/sh
# Run by the OpenWrt package CI on the target: $1 package name, $2 version.

case "$1" in
	leash)
		leash --version | grep -F "leash ${2%%-*}"
		;;
esac
