#!/usr/bin/env bash
# Make this machine ready for the Docker runtime, idempotently:
#   1. install docker.io and debootstrap when missing (apt-get update first),
#   2. start dockerd in the background when `docker info` does not answer, wait for it,
#   3. build the default base image (Python 3.11 on Debian bookworm) when missing.
# Safe to run again on a machine where all of this was done. Needs root (CI runs as root).
# Env: DOCKER_WAIT (seconds to wait for the daemon, default 60),
#      STCLOUD_DOCKER_DEFAULT_SUITE / STCLOUD_DOCKER_DEFAULT_IMAGE to change step 3.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
wait_s="${DOCKER_WAIT:-60}"
suite="${STCLOUD_DOCKER_DEFAULT_SUITE:-bookworm}"
image="${STCLOUD_DOCKER_DEFAULT_IMAGE:-stcloud-base:py3.11}"
log() { echo "ci-docker: $*" >&2; }

sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi

# 1. Packages. A `docker` CLI alone is not enough: we need the daemon (dockerd).
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v docker >/dev/null 2>&1 || { log "no docker CLI after install"; exit 1; }

# 2. Daemon.
if ! docker info >/dev/null 2>&1; then
    if pidof dockerd >/dev/null 2>&1; then
        log "dockerd is running but does not answer yet; waiting"
    else
        log "starting dockerd (log: /var/log/dockerd.log)"
        # setsid: the daemon must outlive this script and the CI step that ran it.
        $sudo setsid nohup dockerd >/var/log/dockerd.log 2>&1 < /dev/null &
    fi
    deadline=$((SECONDS + wait_s))
    until docker info >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "dockerd did not answer within ${wait_s}s; last lines of /var/log/dockerd.log:"
            tail -n 20 /var/log/dockerd.log >&2 || true
            exit 1
        fi
        sleep 0.5
    done
    log "dockerd answers"
fi

# 3. Default base image (skips when present).
"$here/build-base-image.sh" "$suite" "$image"
