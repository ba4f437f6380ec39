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

cleanup() {
    for ns in "${containers[@]}" "$host"; do
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

ns() { python3 -m cli.main --host-netns "$host" "$@"; }
step() { printf '\n$ netstate %s\n' "$*"; ns "$@"; }

ip netns add "$host"
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

step release c1
step release c2
step ls
printf '\nThe event log, as SQL sees it:\n'
python3 - "$NETSTATE_DB" <<'PY'
import sqlite3, sys
for row in sqlite3.connect(sys.argv[1]).execute("SELECT seq, recorded_at, type, network, endpoint FROM events"):
    print(*row)
PY
echo
echo "demo: done; namespaces ${host} and ${containers[*]} are deleted on exit"
