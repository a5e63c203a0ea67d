#!/usr/bin/env bash
# A three-node Docker Swarm on this machine, for the multi-node tests and bench/multinode.py.
#   up      make it (idempotent: what already runs is kept), print its environment
#   down    remove everything `up` made (daemons, namespaces, links, rules, state)
#   env     print the environment of a swarm that is up (exit 1 when it is not)
#   status  one line per node, from the manager
#
# Each node is a `dockerd` with its own data root (/var/lib/stcloud-multinode/nN), exec root,
# pidfile and socket (/run/stcloud-multinode/nN.sock), in a network namespace of its own
# (held by the daemon's process) linked by a veth pair (stcmn-nN-h) to the bridge stcmn0 in the root namespace
# (10.213.0.0/24: the bridge is .1, node N is .1N). n1 is the manager, n2 and n3 workers.
# The swarm's overlay networks come from 10.214.0.0/16; the app network is the attachable
# overlay `stcloud-mn-apps`. A Distribution registry (Debian's docker-registry) listens on
# the bridge address, 10.213.0.1:5213, for the env images (every node trusts it over plain
# HTTP). The host reaches every task's overlay address (10.214.0.0/16) through the gateway
# container stcmn-gateway on the manager (gateway_up). The manager gets the base image from the host daemon (`docker save | load`: no
# download). The nodes reach the outside as the host's containers do (NAT on the bridge),
# so env builds on the manager install packages as they do on the host.
#
# The host's own dockerd and its swarm are not touched: other names, subnets and sockets.
# Nodes share the host's filesystem (one machine): a bind mount of a host path works on
# every node here, as it would not on separate hosts.
set -euo pipefail

NODES=(n1 n2 n3)
RUN=/run/stcloud-multinode
STATE=/var/lib/stcloud-multinode
BRIDGE=stcmn0
NET_PREFIX=10.213.0
POOL=10.214.0.0/16
GW_PREFIX=10.213.1
REGISTRY_PORT=5213
REGISTRY="$NET_PREFIX.1:$REGISTRY_PORT"
APP_NETWORK=stcloud-mn-apps
BASE_IMAGE="${STCLOUD_MULTINODE_BASE_IMAGE:-stcloud-base:py3.11}"
RULE_TAG=stcloud-multinode
log() { echo "multinode-swarm: $*" >&2; }

node_ip() { echo "$NET_PREFIX.1${1#n}"; }
sock() { echo "unix://$RUN/$1.sock"; }
dk() { local node=$1; shift; docker -H "$(sock "$node")" "$@"; }
answers() { dk "$1" version --format '{{.Server.Version}}' >/dev/null 2>&1; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() { # wait_for SECONDS WHAT COMMAND...: poll COMMAND until it succeeds
    local limit=$1 what=$2 start=$SECONDS
    shift 2
    until "$@"; do
        if [ $((SECONDS - start)) -ge "$limit" ]; then
            log "timed out after ${limit}s waiting for $what"
            return 1
        fi
        sleep 0.2
    done
}

ipt_ensure() { # ipt_ensure TABLE CHAIN RULE...: insert the rule once, tagged
    local table=$1 chain=$2
    shift 2
    iptables -t "$table" -C "$chain" "$@" -m comment --comment "$RULE_TAG" 2>/dev/null \
        || iptables -t "$table" -I "$chain" 1 "$@" -m comment --comment "$RULE_TAG"
}

ipt_clear() { # remove every rule tagged $RULE_TAG from TABLE CHAIN
    local table=$1 chain=$2 rule
    while rule=$(iptables -t "$table" -S "$chain" | grep -m1 -- "--comment $RULE_TAG"); do
        # shellcheck disable=SC2086 # the rule's words, as iptables printed them
        eval iptables -t "$table" ${rule/-A/-D}
    done
}

bridge_up() {
    ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
    ip addr show dev "$BRIDGE" | grep -q "$NET_PREFIX.1/24" \
        || ip addr add "$NET_PREFIX.1/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    # Bridged frames pass the root namespace's FORWARD chain (br_netfilter), whose policy the
    # host's dockerd set to DROP: let the nodes talk to each other, and out through NAT.
    ipt_ensure filter FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
    ipt_ensure filter FORWARD -i "$BRIDGE" ! -o "$BRIDGE" -j ACCEPT
    ipt_ensure filter FORWARD -o "$BRIDGE" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
    ipt_ensure nat POSTROUTING -s "$NET_PREFIX.0/24" ! -o "$BRIDGE" -j MASQUERADE
}

in_node() { # in_node NODE COMMAND...: run COMMAND in the node's network namespace
    local node=$1
    shift
    nsenter --net="/proc/$(cat "$RUN/$node.pid")/ns/net" "$@"
}

link_up() { # link_up NODE: the node's veth pair, address and route (its dockerd runs)
    local node=$1 host_end="stcmn-$1-h"
    if ! ip link show "$host_end" >/dev/null 2>&1; then
        ip link add "$host_end" type veth peer name eth0 netns "$(cat "$RUN/$node.pid")"
    fi
    ip link set "$host_end" master "$BRIDGE" up
    in_node "$node" ip link set lo up
    in_node "$node" ip addr show dev eth0 | grep -q "$(node_ip "$node")/24" \
        || in_node "$node" ip addr add "$(node_ip "$node")/24" dev eth0
    in_node "$node" ip link set eth0 up
    in_node "$node" ip route replace default via "$NET_PREFIX.1"
}

registry_up() {
    mkdir -p "$STATE/registry"
    if alive "$RUN/registry.pid"; then return; fi
    cat >"$RUN/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $STATE/registry
  delete:
    enabled: true
http:
  addr: $REGISTRY
EOF
    setsid /usr/bin/docker-registry serve "$RUN/registry.yml" \
        >>"$STATE/registry.log" 2>&1 </dev/null &
    echo $! >"$RUN/registry.pid"
    wait_for 30 "the registry on $REGISTRY" curl -fs -o /dev/null "http://$REGISTRY/v2/"
}

daemon_up() { # daemon_up NODE
    local node=$1
    if answers "$node"; then
        link_up "$node"
        return
    fi
    mkdir -p "$STATE/$node"
    cat >"$RUN/$node.json" <<EOF
{"insecure-registries": ["$REGISTRY"], "cgroup-parent": "stcloud-multinode-$node",
 "deprecated-key-path": "$STATE/$node/key.json", "log-driver": "json-file",
 "features": {"buildkit": false}}
EOF
    # The daemon holds its namespace (unshare execs it): no name under /run/netns, whose
    # bind mounts other software on this machine may unmount, and `ip netns exec` would
    # remount /sys, hiding the cgroup mounts dockerd needs.
    rm -f "$RUN/$node.pid"
    # Its own UTS namespace too: the node's hostname (stcmn-nN) names it in `docker node ls`.
    setsid unshare --net --uts sh -c 'hostname "$0" && exec "$@"' "stcmn-$node" \
        dockerd --config-file "$RUN/$node.json" \
        --data-root "$STATE/$node" --exec-root "$RUN/$node.exec" \
        --pidfile "$RUN/$node.pid" -H "$(sock "$node")" \
        >>"$STATE/$node.log" 2>&1 </dev/null &
    wait_for 60 "dockerd of $node (log: $STATE/$node.log)" answers "$node"
    link_up "$node"
}

swarm_state() { dk "$1" info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null; }

swarm_up() {
    local manager=n1 token
    if [ "$(swarm_state $manager)" != active ]; then
        dk $manager swarm init --advertise-addr "$(node_ip $manager)" \
            --default-addr-pool "$POOL" --default-addr-pool-mask-length 24 >/dev/null
    fi
    token=$(dk $manager swarm join-token -q worker)
    for node in "${NODES[@]:1}"; do
        if [ "$(swarm_state "$node")" != active ]; then
            dk "$node" swarm join --advertise-addr "$(node_ip "$node")" --token "$token" \
                "$(node_ip $manager):2377" >/dev/null
        fi
    done
    wait_for 60 "three ready nodes" ready_nodes 3
    dk $manager network inspect "$APP_NETWORK" >/dev/null 2>&1 \
        || dk $manager network create --driver overlay --attachable \
              --label stcloud.component=network "$APP_NETWORK" >/dev/null
}

ready_nodes() { # ready_nodes N: the manager lists N ready, active nodes
    [ "$(dk n1 node ls --format '{{.Status}} {{.Availability}}' 2>/dev/null \
        | grep -c '^Ready Active$')" -ge "$1" ]
}

image_up() {
    if dk n1 image inspect "$BASE_IMAGE" >/dev/null 2>&1; then return; fi
    docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || {
        log "the host daemon has no $BASE_IMAGE (bash scripts/build-base-image.sh)"
        return 1
    }
    docker save "$BASE_IMAGE" | dk n1 load >/dev/null
}

gateway_up() {
    # The host reaches the tasks' overlay addresses as a proxy on the overlay would: through
    # a container attached to it on the manager (stcmn-gateway) and a veth pair from the
    # root namespace into that container, which forwards and masquerades onto the overlay
    # (so every task answers the gateway's own overlay address, on any node).
    local name=stcmn-gateway pid dev
    if [ "$(dk n1 inspect -f '{{.State.Running}}' $name 2>/dev/null)" != true ]; then
        dk n1 rm -f $name >/dev/null 2>&1 || true
        dk n1 run -d --name $name --init --restart unless-stopped --network "$APP_NETWORK" \
            --label stcloud.component=multinode-gateway "$BASE_IMAGE" \
            python3 -c 'import signal; signal.pause()' >/dev/null
    fi
    pid=$(dk n1 inspect -f '{{.State.Pid}}' $name)
    gw() { nsenter --net="/proc/$pid/ns/net" "$@"; }
    if ! ip link show stcmn-gw >/dev/null 2>&1; then
        ip link add stcmn-gw mtu 1450 type veth peer name gw0 mtu 1450 netns "$pid"
    fi
    ip addr show dev stcmn-gw | grep -q "$GW_PREFIX.1/30" || ip addr add "$GW_PREFIX.1/30" dev stcmn-gw
    ip link set stcmn-gw up
    gw ip addr show dev gw0 | grep -q "$GW_PREFIX.2/30" || gw ip addr add "$GW_PREFIX.2/30" dev gw0
    gw ip link set gw0 up
    gw sysctl -qw net.ipv4.ip_forward=1
    dev=$(gw ip -o -4 addr show | awk -v net="${POOL%.*.*}." 'index($4, net) == 1 {print $2}' | head -1)
    gw iptables -t nat -C POSTROUTING -s "$GW_PREFIX.0/30" -o "$dev" -j MASQUERADE 2>/dev/null \
        || gw iptables -t nat -A POSTROUTING -s "$GW_PREFIX.0/30" -o "$dev" -j MASQUERADE
    ip route replace "$POOL" via "$GW_PREFIX.2" dev stcmn-gw
}

print_env() {
    echo "STCLOUD_MULTINODE_MANAGER=$(sock n1)"
    echo "STCLOUD_MULTINODE_NODES=$(for n in "${NODES[@]}"; do printf '%s ' "$(sock "$n")"; done \
        | sed 's/ $//')"
    echo "STCLOUD_MULTINODE_REGISTRY=$REGISTRY"
    echo "STCLOUD_MULTINODE_NETWORK=$APP_NETWORK"
}

up() {
    command -v dockerd >/dev/null && command -v ip >/dev/null && command -v iptables >/dev/null \
        || { log "needs dockerd, iproute2 and iptables (scripts/ci-docker.sh)"; exit 1; }
    if [ ! -x /usr/bin/docker-registry ]; then
        log "installing Debian's docker-registry (the env images' registry)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            docker-registry >/dev/null
    fi
    mkdir -p "$RUN" "$STATE"
    bridge_up
    registry_up
    local pids=()
    for node in "${NODES[@]}"; do daemon_up "$node" & pids+=($!); done
    wait "${pids[@]}"
    for node in "${NODES[@]}"; do answers "$node" || { log "$node did not start"; exit 1; }; done
    swarm_up
    image_up
    gateway_up
    print_env
}

down() {
    for node in "${NODES[@]}"; do
        local pidfile="$RUN/$node.pid"
        if alive "$pidfile"; then
            local pid
            pid=$(cat "$pidfile")
            kill "$pid"
            wait_for 60 "dockerd of $node to stop" bash -c "! kill -0 $pid 2>/dev/null" \
                || kill -9 "$pid" 2>/dev/null || true
        fi
    done
    if alive "$RUN/registry.pid"; then kill "$(cat "$RUN/registry.pid")"; fi
    # What the daemons left mounted under their roots (overlay layers, netns files, shm).
    { grep -oE " ($STATE|$RUN)/[^ ]*" /proc/mounts || true; } | sort -r | while read -r mnt; do
        umount -l "$mnt" 2>/dev/null || true
    done
    for node in "${NODES[@]}"; do ip link del "stcmn-$node-h" 2>/dev/null || true; done
    ip link del "$BRIDGE" 2>/dev/null || true
    ip link del stcmn-gw 2>/dev/null || true
    ip route del "$POOL" 2>/dev/null || true
    ipt_clear filter FORWARD
    ipt_clear nat POSTROUTING
    rm -rf "$STATE" "$RUN"
    log "removed"
}

case "${1:-}" in
up) up ;;
down) down ;;
env)
    answers n1 && [ "$(swarm_state n1)" = active ] || { log "not up"; exit 1; }
    print_env
    ;;
status) dk n1 node ls ;;
*)
    echo "usage: $0 up|down|env|status" >&2
    exit 2
    ;;
esac
