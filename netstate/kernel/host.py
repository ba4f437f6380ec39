"""Reading the facts about the managed namespace that subnet selection needs."""

from __future__ import annotations

from netstate.domain.subnets import HostFacts
from netstate.kernel.netns import read_nameservers, resolv_conf_path


def read_host_facts(links, host_netns: str | None) -> HostFacts:
    """Return the routes of the managed namespace and the IPv4 nameservers that apply there."""
    nameservers = read_nameservers(resolv_conf_path(host_netns))
    return HostFacts(routes=links.routes(), nameservers=nameservers)
