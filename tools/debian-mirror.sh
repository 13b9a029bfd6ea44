#!/usr/bin/env bash
# Print the Debian mirror this machine's apt uses for bookworm (deb822
# .sources or a one-line sources.list), else deb.debian.org. Used by
# tools/fresh-machine.sh and tools/make-debian-base.sh.
set -euo pipefail
mirror=""
for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] || continue
    mirror=$(awk '/^URIs:/ { u = $2 } /^Suites:/ && / bookworm( |$)/ { print u; exit }' "$f")
    [ -n "$mirror" ] && break
done
if [ -z "$mirror" ] && [ -e /etc/apt/sources.list ]; then
    mirror=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list)
fi
echo "${mirror:-http://deb.debian.org/debian}"
