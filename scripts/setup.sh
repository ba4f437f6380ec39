#!/usr/bin/env bash
# Install what netstate, its demo and its tests need on a Debian machine, as root.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    iproute2 iptables nftables conntrack iputils-ping procps kmod >/dev/null

# Debian's own python3 ships without pip; a pyenv or venv Python brings its own.
if ! python3 -m pip --version >/dev/null 2>&1; then
    apt-get install -y -qq --no-install-recommends python3-pip python3-venv >/dev/null
fi
python3 -m pip install -q -e '.[test]'
echo "setup: done ($(python3 --version), netstate $(python3 -c 'import netstate; print(netstate.__version__)'))"
