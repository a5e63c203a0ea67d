#!/usr/bin/env bash
# Build a Docker base image for a Python version no Debian release ships (3.10 and 3.12:
# bullseye has 3.9, bookworm 3.11, trixie 3.13) from an interpreter installed on this host
# (pyenv's, or any CPython built here): its prefix is copied, at its own path, into the
# Debian base image of the release the host runs (the release it was built on, so its libc
# and libraries match), and becomes that image's /usr/bin/python3, which environment
# builds use.
# Usage: build-host-python-image.sh <interpreter> <debian-base-image> <image>
#   e.g. build-host-python-image.sh /root/.pyenv/versions/3.12.1/bin/python3.12 \
#            stcloud-base:py3.11 stcloud-base:py3.12
# The Docker runtime runs it by itself the first time an environment asks for such a
# version (supervisor/runtimes/docker_base.py); by hand it makes images for docker_base_images.
# The prefix's site-packages (whatever was added on the host) and test suite are left out.
# Does nothing when the image exists.
set -euo pipefail

if [ "$#" -ne 3 ]; then
    echo "usage: $0 <interpreter> <debian-base-image> <image>" >&2
    exit 2
fi
interp="$1"
base="$2"
image="$3"
log() { echo "build-host-python-image: $*" >&2; }

if docker image inspect "$image" >/dev/null 2>&1; then
    log "$image exists; skipping"
    exit 0
fi
prefix="$("$interp" -I -c 'import sys; print(sys.base_prefix)')"
minor="$("$interp" -I -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
"$interp" -I -c 'import venv' || { log "$interp cannot import venv"; exit 1; }
host_release="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
base_release="$(docker run --rm --network none --entrypoint /bin/sh "$base" \
    -c '. /etc/os-release && echo "${VERSION_CODENAME:-}"')"
if [ -z "$host_release" ] || [ "$host_release" != "$base_release" ]; then
    log "$interp was built on Debian '$host_release' but $base is '$base_release';" \
        "use a base image of the host's release (scripts/build-base-image.sh $host_release ...)"
    exit 1
fi

work="$(mktemp -d /var/tmp/stcloud-pyimage.XXXXXX)"
trap 'rm -rf "$work"' EXIT
rel="${prefix#/}"
tar -C / --exclude="$rel/lib/python$minor/site-packages/*" \
    --exclude="$rel/lib/python$minor/test" -cf "$work/prefix.tar" "$rel"
cat >"$work/Dockerfile" <<EOF
FROM $base
ADD prefix.tar /
RUN ln -sf "$prefix/bin/python$minor" /usr/bin/python3 \\
    && /usr/bin/python3 -I -c 'import venv, ssl, sqlite3, ctypes, zlib, sys; print(sys.version)'
EOF
start=$SECONDS
log "copying $prefix (Python $minor) into $base as $image"
docker build -q -t "$image" "$work" >/dev/null
log "built $image in $((SECONDS - start)) s"
