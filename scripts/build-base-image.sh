#!/usr/bin/env bash
# Build a Python base image without a container registry:
#   debootstrap --variant=minbase a Debian suite, then `docker import` the tree.
# Usage: build-base-image.sh <debian-suite> <image-name>
#   e.g. build-base-image.sh bookworm stcloud-base:py3.11
#   (bullseye -> Python 3.9, bookworm -> 3.11, trixie -> 3.13)
#    or: build-base-image.sh --tree <debian-suite> <directory>
#   leaves the same tree in <directory> (renamed into place when complete) instead of
#   importing it: the process runtime's root filesystems (supervisor/runtimes/rootfs.py).
# Does nothing when the image (or the directory) exists. The Debian mirror is the one this host's apt uses
# (first non-security `debian` URI in /etc/apt/sources.list{,.d/*}); DEBIAN_MIRROR overrides.
# The image's /etc/apt/sources.list names that mirror, so `apt-get install` inside build
# containers reaches Debian the same way the host does.
set -euo pipefail

tree=""
if [ "${1:-}" = "--tree" ]; then
    shift
    tree="${2:-}"
fi
if [ "$#" -ne 2 ]; then
    echo "usage: $0 <debian-suite> <image-name> | $0 --tree <debian-suite> <directory>" >&2
    exit 2
fi
suite="$1"
image="$2"
log() { echo "build-base-image: $*" >&2; }

if [ -n "$tree" ] && [ -d "$tree" ]; then
    log "$tree exists; skipping"
    exit 0
elif [ -z "$tree" ] && docker image inspect "$image" >/dev/null 2>&1; then
    log "$image exists; skipping"
    exit 0
fi

host_mirror() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        case "$f" in
            *.sources)  # deb822: "URIs: a b"
                sed -n 's/^URIs:[[:space:]]*//p' "$f" | tr ' ' '\n' ;;
            *)          # one-line: "deb [opts] URI suite comps"
                sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p' "$f" ;;
        esac
    done | grep -E '/debian/?$' | grep -v -- '-security' | head -n 1
}
mirror="${DEBIAN_MIRROR:-$(host_mirror || true)}"
mirror="${mirror:-http://deb.debian.org/debian}"
mirror="${mirror%/}"

command -v debootstrap >/dev/null || { log "debootstrap is not installed"; exit 1; }

if [ -n "$tree" ]; then  # beside the target, so that the final rename stays on one disk
    mkdir -p "$(dirname "$tree")"
    work="$(mktemp -d "$(dirname "$tree")/.$(basename "$tree").building.XXXXXX")"
else
    work="$(mktemp -d /var/tmp/stcloud-rootfs.XXXXXX)"
fi
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
start=$SECONDS
log "debootstrap $suite from $mirror"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,git \
    "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
        log "debootstrap failed; last lines:"
        tail -n 30 "$work/debootstrap.log" >&2
        [ -f "$root/debootstrap/debootstrap.log" ] && tail -n 30 "$root/debootstrap/debootstrap.log" >&2
        exit 1
    }
# Smaller image, and apt inside containers uses the same mirror as the host.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/debootstrap
echo "deb $mirror $suite main" > "$root/etc/apt/sources.list"
if [ -n "$tree" ]; then
    chmod 0755 "$root"
    mv -T "$root" "$tree"
    log "$tree built in $((SECONDS - start))s ($(chroot "$tree" python3 --version))"
    exit 0
fi
log "importing as $image"
tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    -m "debootstrap --variant=minbase $suite" - "$image" >/dev/null
log "$image built in $((SECONDS - start))s ($(docker run --rm "$image" python3 --version))"
