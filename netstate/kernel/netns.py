"""Network namespace handling: entering a named namespace and resolving container namespaces.

`enter_host_netns` moves the whole process into a named namespace before it touches the
kernel, so links, routes, sysctls, firewall rules, `iptables-*` child processes and the proxy
all act there. This is what `--host-netns` does, and how tests and demos stay off the host.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from netstate.errors import InvalidInput, NotFound

CLONE_NEWNET = 0x40000000
# ioctl on a namespace file that returns its CLONE_NEW* type (linux/nsfs.h, Linux 4.11+).
NS_GET_NSTYPE = 0xB703
NETNS_RUN_DIR = Path("/run/netns")

_libc = None


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def netns_location(name_or_path: str) -> Path:
    """Return where a namespace given as a name under /run/netns or as a path would be.

    Raises:
        InvalidInput: the text is empty.
    """
    if not name_or_path:
        raise InvalidInput("invalid namespace '': give a name under /run/netns or a path")
    if "/" in name_or_path:
        return Path(name_or_path)
    return NETNS_RUN_DIR / name_or_path


def netns_path(name_or_path: str) -> Path:
    """Resolve a namespace given as a name under /run/netns or as a path.

    Raises:
        InvalidInput: the text is empty.
        NotFound: nothing is at the path, or it is not a network namespace.
    """
    path = netns_location(name_or_path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        msg = f"network namespace {name_or_path!r} not found at {path}; create it with `ip netns add`"
        raise NotFound(msg) from None
    except OSError as err:
        raise NotFound(f"cannot open network namespace {name_or_path!r} at {path}: {err.strerror}") from err
    try:
        kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
    except OSError as err:
        if err.errno not in (errno.ENOTTY, errno.EINVAL):
            raise NotFound(f"cannot inspect {path}: {err.strerror}") from err
        kind = None
    finally:
        os.close(fd)
    if kind != CLONE_NEWNET:
        msg = f"{path} is not a network namespace; give a name under /run/netns or a path such as /proc/PID/ns/net"
        raise NotFound(msg)
    return path


def is_netns(path: str | Path) -> bool:
    """Return True when `path` is a network namespace (a bind mount of an nsfs file).

    A path under /run/netns whose mount is gone but whose file is left behind is not one.
    """
    try:
        found = os.stat(path)
    except OSError:
        return False
    own = os.stat("/proc/self/ns/net")
    # Every namespace file lives on the one nsfs filesystem, so the device tells them apart.
    return found.st_dev == own.st_dev


def same_namespace(path: str | Path, other: str | Path) -> bool:
    """Return whether two namespace files name the same namespace."""
    a, b = os.stat(path), os.stat(other)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def enter_host_netns(name: str) -> Path:
    """Move this process into the named namespace for the rest of its life."""
    path = netns_path(name)
    fd = os.open(path, os.O_RDONLY)
    try:
        _setns(fd)
    except OSError as err:
        raise NotFound(f"cannot enter network namespace {name!r}: {err.strerror}") from err
    finally:
        os.close(fd)
    return path


@contextmanager
def entered(path: str | Path) -> Iterator[None]:
    """Run the block with this thread inside the namespace at `path`, then come back.

    Sockets opened inside the block stay bound to that namespace after it ends.
    """
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(path, os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


def resolv_conf_path(host_netns: str | None) -> Path:
    """Return the resolv.conf that applies in the managed namespace, as `ip netns exec` does."""
    if host_netns:
        own = Path("/etc/netns") / host_netns / "resolv.conf"
        if own.exists():
            return own
    return Path("/etc/resolv.conf")


def read_nameservers(path: Path) -> tuple:
    """Return the IPv4 nameservers listed in a resolv.conf file (none if it is missing)."""
    from ipaddress import AddressValueError, IPv4Address

    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return ()
    found = []
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                found.append(IPv4Address(words[1]))
            except AddressValueError:
                continue  # IPv6 nameservers cannot clash with an IPv4 subnet
    return tuple(found)
