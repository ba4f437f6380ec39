"""Firewall rules as data: pure builders of the desired rule set and the diff against the kernel.

Nothing in this package touches the kernel. `netstate.kernel.iptables` observes and applies.
"""
