"""What the proxy and its supervisor share: the mapping list file and the control protocol.

The supervisor writes the mapping list as JSON next to the database, then requests a reload over
the proxy's control socket. The reply lists the mappings the proxy could not serve.

Control protocol: one JSON object per line on an abstract Unix stream socket, one request and
one reply per connection. Requests: {"op": "reload"} and {"op": "status"}. Abstract sockets
belong to the network namespace, so a proxy is reachable only from the namespace it serves,
and the proxy answers only peers running as root or as its own user.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

FORMAT_VERSION = 1
MAX_MESSAGE = 1 << 24


@dataclass(frozen=True, slots=True)
class ProxyMapping:
    """One published port the proxy listens on and the container address it forwards to."""

    protocol: str
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int

    @property
    def key(self) -> tuple[str, str, int]:
        """What the listener occupies: protocol, host address and port."""
        return (self.protocol, self.host_ip, self.host_port)

    def describe(self) -> str:
        return f"{self.host_ip}:{self.host_port}/{self.protocol} -> {self.container_ip}:{self.container_port}"


def encode_config(mappings: list[ProxyMapping] | tuple[ProxyMapping, ...]) -> str:
    """Return the file content for a mapping list, in a stable order."""
    rows = [asdict(m) for m in sorted(mappings, key=lambda m: m.key)]
    return json.dumps({"version": FORMAT_VERSION, "mappings": rows}, indent=1) + "\n"


def decode_config(text: str) -> list[ProxyMapping]:
    """Parse a mapping list file; raise ValueError when it is malformed or of a newer version."""
    data = json.loads(text)
    if data.get("version") != FORMAT_VERSION:
        raise ValueError(f"unsupported proxy config version {data.get('version')!r}")
    return [ProxyMapping(**row) for row in data["mappings"]]


def read_config(path: Path) -> list[ProxyMapping]:
    """Return the mappings in the file at `path`; none when it does not exist."""
    try:
        return decode_config(path.read_text())
    except FileNotFoundError:
        return []


def write_config(path: Path, mappings) -> None:
    """Replace the file at `path` atomically, so a reload never reads half a list."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w") as handle:
        handle.write(encode_config(mappings))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def control_name(config_path: Path) -> str:
    """Return the abstract socket name (without the leading NUL) of the proxy for a list file."""
    digest = hashlib.sha256(str(config_path.resolve()).encode()).hexdigest()[:20]
    return f"netstate-proxy-{digest}"


def encode_message(message: dict) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"
