"""The userland proxy: one process serving every published port of a managed namespace.

Run as `python3 -m netstate.proxy --config PATH --control NAME`; `netstate.kernel.proxy`
starts, reloads and stops it. It imports nothing of netstate outside this package.
"""
