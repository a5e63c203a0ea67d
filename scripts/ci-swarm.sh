#!/usr/bin/env bash
# A single-node Docker Swarm for the SwarmRuntime's tests (.ci/run calls both commands).
#   init   make this daemon a swarm manager (`docker swarm init --advertise-addr 127.0.0.1`)
#          when it is not in a swarm yet; idempotent. Leaves a marker file when it did.
#   leave  `docker swarm leave --force`, only when `init` of this script made the swarm
#          (the marker exists): a swarm the machine had before is never left.
# Env: STCLOUD_SWARM_MARKER (default /var/tmp/stcloud-ci-swarm.marker).
set -euo pipefail

marker="${STCLOUD_SWARM_MARKER:-/var/tmp/stcloud-ci-swarm.marker}"
log() { echo "ci-swarm: $*" >&2; }

swarm_state() {
    docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null || echo "no-daemon"
}

case "${1:-}" in
init)
    state="$(swarm_state)"
    case "$state" in
    active)
        log "this daemon is already in a swarm; nothing to do"
        ;;
    inactive)
        docker swarm init --advertise-addr 127.0.0.1 >/dev/null
        echo "initialised by scripts/ci-swarm.sh at $(date -u +%FT%TZ)" >"$marker"
        log "single-node swarm initialised (advertise address 127.0.0.1)"
        ;;
    no-daemon)
        log "no Docker daemon answers (run scripts/ci-docker.sh first)"
        exit 1
        ;;
    *)
        log "the swarm state is '$state'; not touching it"
        exit 1
        ;;
    esac
    ;;
leave)
    if [ -f "$marker" ]; then
        if [ "$(swarm_state)" = "active" ]; then
            docker swarm leave --force >/dev/null
            log "left the swarm this script initialised"
        fi
        rm -f "$marker"
    else
        log "this script did not initialise the swarm; leaving it as it is"
    fi
    ;;
*)
    echo "usage: $0 init|leave" >&2
    exit 2
    ;;
esac
