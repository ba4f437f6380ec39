"""The pure core: events, the state folded from them, and the decisions that emit them.

Nothing in this package performs I/O. It imports no SQLAlchemy, pyroute2, iptc, subprocess or
socket module, and reads neither the clock nor a random source: time, host facts and ids are
passed in. A unit test enforces this.
"""
