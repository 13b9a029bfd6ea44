#!/usr/bin/env bash
# Run the README's quick-start commands on a fresh Debian 12: debootstrap a
# minimal bookworm (from the mirror this machine's apt uses) into a scratch
# directory under /tmp, copy the source tree into it (tracked and untracked
# files, no build tree), mount proc, sys and dev, and run each command of the
# README's "Quick start" alone in the chroot, as root, with no standard input
# and a clean environment. Reports each command's exit status, time and last
# line, and keeps the logs.
#
# Usage: tools/fresh-machine.sh [--keep] [--only N]
#   --keep     leave the chroot (and its logs) in place
#   --only N   run only the Nth command (1: the demo, 2: the test suite)
# Needs root and debootstrap (apt-get install debootstrap). The suite's own
# dockerd inside the chroot runs in a network namespace of its own, so it
# warns "IPv4 forwarding is disabled" as a station host's daemon may.
# Exit status: 0 when every command passed.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
keep=0 only=""
while [ $# -gt 0 ]; do
    case $1 in
        --keep) keep=1; shift ;;
        --only) only=$2; shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "fresh-machine: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
die() { echo "fresh-machine: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot, mounts)"
command -v debootstrap >/dev/null || die "needs debootstrap: apt-get install debootstrap"

# The commands: every non-comment line of the sh blocks under "## Quick start".
mapfile -t commands < <(awk '
    /^## / { inq = ($0 ~ /^## Quick start/) }
    inq && /^```sh/ { inblock = 1; next }
    inblock && /^```/ { inblock = 0; next }
    inq && inblock && !/^[[:space:]]*(#|$)/ { print }
' README.md)
[ ${#commands[@]} -gt 0 ] || die "no commands found under README.md's Quick start"

# The Debian mirror apt uses here.
mirror=$(tools/debian-mirror.sh)

root=$(mktemp -d /tmp/pht-fresh.XXXXXX)
logs=$root.logs
mkdir -p "$logs"
chmod 0755 "$root"

cleanup() {
    set +e
    # Whatever still runs with its root in the chroot (a daemon a failed run
    # left) is ours: stop it before unmounting.
    local p r
    for p in /proc/[0-9]*; do
        r=$(readlink "$p/root" 2>/dev/null) || continue
        case "$r" in "$root" | "$root"/*) kill -KILL "${p#/proc/}" 2>/dev/null ;; esac
    done
    sleep 1
    awk -v r="$root" '$5 == r || index($5, r "/") == 1 { print $5 }' /proc/self/mountinfo | LC_ALL=C sort -r |
        while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
    if [ "$keep" = 1 ]; then
        echo "fresh-machine: kept $root (logs in $logs)"
    else
        rm -rf --one-file-system "$root"
        echo "fresh-machine: logs in $logs"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

now() { date +%s; }
t0=$(now)
echo "fresh-machine: debootstrap bookworm (minbase) from $mirror into $root"
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$logs/debootstrap.log" 2>&1 ||
    { tail -n 20 "$logs/debootstrap.log" >&2; die "debootstrap failed (log: $logs/debootstrap.log)"; }
echo "fresh-machine: debootstrap took $(($(now) - t0)) s"

# apt in the chroot uses the same sources as this machine (bookworm,
# bookworm-updates, bookworm-security), and this machine's resolver.
rm -f "$root/etc/apt/sources.list"
for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] && grep -q 'debian' "$f" && cp "$f" "$root/etc/apt/sources.list.d/"
done
[ -e /etc/apt/sources.list ] && cp /etc/apt/sources.list "$root/etc/apt/sources.list"
cp -L /etc/resolv.conf "$root/etc/resolv.conf"

# The checkout, where a clone would go (world-readable: the gateway spec's
# nginx workers run as nobody and read the keys in it).
tree=/usr/src/libpht
mkdir -p "$root$tree"
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
    git -C "$src" ls-files -co --exclude-standard -z | tar -C "$src" --null -T - -cf - | tar -C "$root$tree" -xf -
else
    tar -C "$src" --exclude=./build --exclude='./build-*' -cf - . | tar -C "$root$tree" -xf -
fi

# The chroot's / must be a mount point: dockerd remounts it when it unpacks
# an image (docker load), which fails with EINVAL on a plain directory.
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys" && mount --make-rslave "$root/sys"
mount --rbind /dev "$root/dev" && mount --make-rslave "$root/dev"
mount -t tmpfs tmpfs "$root/run"

failed=0 n=0
summary=()
for cmd in "${commands[@]}"; do
    n=$((n + 1))
    [ -n "$only" ] && [ "$only" != "$n" ] && continue
    echo "fresh-machine: [$n] $cmd"
    t=$(now)
    rc=0
    chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        /bin/bash -c "cd $tree && $cmd" </dev/null >"$logs/command-$n.log" 2>&1 || rc=$?
    secs=$(($(now) - t))
    # The test run's total line when there is one (services print after it).
    # (a command with no such line, the demo, must not end the script: pipefail and set -e)
    last=$(sed -E 's/\x1b\[[0-9;]*m//g' "$logs/command-$n.log" | grep -E '^tests: [0-9]+ passed' | tail -n 1 || true)
    [ -n "$last" ] || last=$(sed -E 's/\x1b\[[0-9;]*m//g' "$logs/command-$n.log" | grep -v '^[[:space:]]*$' | tail -n 1 || true)
    line="[$n] exit $rc after ${secs} s: $cmd -- $last"
    summary+=("$line")
    echo "fresh-machine: $line"
    [ "$rc" -eq 0 ] || { failed=1; tail -n 30 "$logs/command-$n.log" >&2; }
done

echo "fresh-machine: summary (total $(($(now) - t0)) s; logs in $logs)"
printf '  %s\n' "${summary[@]}"
exit "$failed"
