#!/usr/bin/env bash
# Run netstate's main job on the real kernel inside throwaway namespaces, then delete them.
# Nothing outside the namespaces this script creates is changed.
set -euo pipefail
cd "$(dirname "$0")/.."

tag="demo$$"
host="${tag}-host"
work=$(mktemp -d)
export NETSTATE_DB="$work/netstate.db"
containers=()
servers=()

cleanup() {
    for pid in "${servers[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    # The proxy outlives its namespace's name, so end it by the pid it recorded.
    if [ -f "$work/netstate.proxy.pid" ]; then
        kill "$(cat "$work/netstate.proxy.pid")" 2>/dev/null || true
    fi
    for ns in "${containers[@]}" "$host"; do
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

ns() { python3 -m cli.main --host-netns "$host" "$@"; }
step() { printf '\n$ netstate %s\n' "$*"; ns "$@"; }

ip netns add "$host"
ip -n "$host" link set lo up
for c in c1 c2 c3; do
    ip netns add "${tag}-$c"
    containers+=("${tag}-$c")
done

step network create web --subnet 10.44.0.0/24 --bridge nsweb0
step allocate c1 --netns "${tag}-c1"
step allocate c2 --network web --ip 10.44.0.9 --netns "${tag}-c2"
step allocate c3 --network web --netns "${tag}-c3" --json
step ls
step network ls

gateway=$(ns ls --json | python3 -c 'import json,sys; print([a for a in json.load(sys.stdin) if a["endpoint"]=="c1"][0]["gateway"])')
printf '\n$ ping -c 1 %s   (from inside c1)\n' "$gateway"
ip netns exec "${tag}-c1" ping -c 1 -W 2 "$gateway"
printf '\n$ ping -c 1 10.44.0.9   (c3 to c2 across the bridge nsweb0)\n'
ip netns exec "${tag}-c3" ping -c 1 -W 2 10.44.0.9

printf '\n$ (in c2) python3 -m http.server 80   # a web server in the container\n'
ip netns exec "${tag}-c2" python3 -m http.server 80 --bind 10.44.0.9 >/dev/null 2>&1 &
server=$!
servers+=("$server")
for _ in $(seq 50); do
    ip netns exec "${tag}-c2" python3 -c 'import socket; socket.create_connection(("10.44.0.9", 80), 1)' 2>/dev/null && break
    sleep 0.1
done
step map c2 8080:80
step ports
printf '\n$ (on the host) fetch http://127.0.0.1:8080/   # through the userland proxy\n'
ip netns exec "$host" python3 -c 'import urllib.request; r = urllib.request.urlopen("http://127.0.0.1:8080/", timeout=5); print(r.status, r.reason, len(r.read()), "bytes")'
printf '\n$ (on the host) fetch http://10.44.0.1:8080/   # through the DNAT rule\n'
ip netns exec "$host" python3 -c 'import urllib.request; r = urllib.request.urlopen("http://10.44.0.1:8080/", timeout=5); print(r.status, r.reason, len(r.read()), "bytes")'
printf '\n$ iptables-legacy -t nat -S NETSTATE   (inside the demo namespace)\n'
ip netns exec "$host" iptables-legacy -t nat -S NETSTATE

step release c1
step release c2     # unmaps 8080 first, then returns the address
step ls
step history --address 10.44.0.9
step sql "SELECT endpoint, address, allocated_at, released_at FROM address_leases ORDER BY alloc_seq"
echo
echo "demo: done; namespaces ${host} and ${containers[*]} are deleted on exit"
