"""Kernel adapters. Only this package talks to netlink, iptables, sysctls and the proxy.

Each real adapter has a fake beside it with the same methods (`fake.py`) for fast unit tests;
the kernel tests run the real ones inside namespaces they create.
"""
