#!/usr/bin/env bash
# Build the tiny base image the test suite runs trains on, without a daemon or
# network: a rootfs holding Debian's static busybox with a symlink per applet,
# written as a docker-archive (the `docker save` layout: manifest.json, config
# JSON and one uncompressed layer tar, each named by its sha256).
#
# Usage: tools/make-base-image.sh [-o OUT.tar] [-t TAG] [--oci DIR] [--load]
#   -o OUT.tar  where to write the archive (default: $PHT_BUILD_DIR or build,
#               then test-images/busybox.tar); prints the path on stdout
#   -t TAG      repository:tag recorded in the archive (pht-test/busybox:latest)
#   --oci DIR   also write an OCI image layout to DIR (via skopeo), tag "latest"
#   --load      `docker load` the archive into the daemon DOCKER_HOST names
# The archive is reproducible: same busybox, same bytes (mtime 0, owner 0:0,
# sorted names), so its image ID only changes when Debian's busybox does.
set -euo pipefail
caller=$PWD # relative -o and --oci paths are the caller's
cd "$(dirname "$0")/.."

out="${PHT_BUILD_DIR:-$PWD/build}/test-images/busybox.tar"
tag="pht-test/busybox:latest"
oci="" load=0
while [ $# -gt 0 ]; do
    case "$1" in
        -o) out=$2; shift 2 ;;
        -t) tag=$2; shift 2 ;;
        --oci) oci=$2; shift 2 ;;
        --load) load=1; shift ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "make-base-image: unknown argument: $1" >&2; exit 2 ;;
    esac
done
die() { echo "make-base-image: $*" >&2; exit 1; }
case "$out" in /*) ;; *) out=$caller/$out ;; esac
case "$oci" in /* | "") ;; *) oci=$caller/$oci ;; esac

[[ "$tag" =~ ^[a-z0-9][a-z0-9._/-]*:[A-Za-z0-9_][A-Za-z0-9._-]*$ ]] \
    || die "tag must be repository:tag in lower case, got '$tag'"

# Debian's busybox-static; the dynamic `busybox` package would need a libc in
# the image, so refuse anything that is not statically linked.
bb=""
for c in /bin/busybox /usr/bin/busybox; do [ -x "$c" ] && { bb=$c; break; }; done
[ -n "$bb" ] || die "no busybox binary: install Debian's busybox-static (tools/install-deps.sh)"
if command -v file >/dev/null && ! file -L "$bb" | grep -q 'statically linked'; then
    die "$bb is not statically linked: install busybox-static instead of busybox"
fi

case "$(dpkg --print-architecture 2>/dev/null || uname -m)" in
    amd64|x86_64) arch=amd64 ;;
    arm64|aarch64) arch=arm64 ;;
    i386|i686) arch=386 ;;
    armhf|armel) arch=arm ;;
    *) arch=$(dpkg --print-architecture) ;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/pht-base-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
mkdir -p "$root"/{bin,etc,opt,tmp,root,dev,proc,sys}
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"
install -m 0755 "$bb" "$root/bin/busybox"
"$bb" --list | while IFS= read -r applet; do
    case "$applet" in ''|busybox|*/*) continue ;; esac
    ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"

# Reproducible tar of a directory's contents, names without "./" as in the
# archives `docker save` writes: sorted, owner 0:0, mtime 0, GNU format.
pack() { # $1 = directory, $2 = output tar
    (cd "$1" && find . -mindepth 1 | sed 's|^\./||' | LC_ALL=C sort) >"$work/names"
    tar --create --file="$2" --directory="$1" --format=gnu --no-recursion \
        --owner=0 --group=0 --numeric-owner --mtime=@0 --files-from="$work/names"
}

layer="$work/layer.tar"
pack "$root" "$layer"
diff_id=$(sha256sum "$layer" | cut -d' ' -f1)

bbver=$({ "$bb" --help 2>&1 || true; } | sed -nE '1s/^BusyBox (v[^ ]+).*/\1/p')
config="$work/config.json"
printf '%s' "{\"architecture\":\"$arch\",\"os\":\"linux\",\
\"created\":\"1970-01-01T00:00:00Z\",\
\"config\":{\"Env\":[\"PATH=/bin\"],\"Cmd\":[\"/bin/sh\"],\"WorkingDir\":\"/\"},\
\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:$diff_id\"]},\
\"history\":[{\"created\":\"1970-01-01T00:00:00Z\",\
\"created_by\":\"tools/make-base-image.sh: busybox-static $bbver\"}]}" >"$config"
config_id=$(sha256sum "$config" | cut -d' ' -f1)

pkg="$work/archive"
mkdir -p "$pkg/$diff_id"
mv "$layer" "$pkg/$diff_id/layer.tar"
mv "$config" "$pkg/$config_id.json"
printf '%s' "[{\"Config\":\"$config_id.json\",\"RepoTags\":[\"$tag\"],\
\"Layers\":[\"$diff_id/layer.tar\"]}]" >"$pkg/manifest.json"
repo=${tag%:*}
printf '%s' "{\"$repo\":{\"${tag##*:}\":\"$diff_id\"}}" >"$pkg/repositories"

mkdir -p "$(dirname "$out")"
pack "$pkg" "$work/image.tar"
mv "$work/image.tar" "$out"

if [ -n "$oci" ]; then
    command -v skopeo >/dev/null || die "--oci needs skopeo (tools/install-deps.sh --test)"
    mkdir -p "$(dirname "$oci")"
    tmp_oci="$oci.tmp.$$"
    rm -rf "$tmp_oci"
    skopeo --insecure-policy copy --quiet "docker-archive:$out" "oci:$tmp_oci:latest" >&2 \
        || { rm -rf "$tmp_oci"; die "skopeo could not convert $out to an OCI layout"; }
    rm -rf "$oci"
    mv "$tmp_oci" "$oci"
fi
if [ "$load" = 1 ]; then
    docker load --input "$out" >&2 || die "docker load rejected $out"
fi
echo "$out"
