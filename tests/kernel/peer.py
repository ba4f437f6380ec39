"""Traffic peers for kernel tests, run inside a namespace with `ip netns exec NS python3 peer.py`.

    tcp-server PORT NAME          answer each line with "NAME CLIENT_IP LINE"
    udp-server PORT NAME          answer each datagram with "NAME CLIENT_IP DATAGRAM"
    udp-port-server PORT          answer each datagram with the client's source port
    tcp-hash-server PORT          read to end of stream, answer "BYTES SHA256", close
    tcp-ask HOST PORT MESSAGE [TIMEOUT]                send one line, print the answer
    udp-ask HOST PORT MESSAGE [TIMEOUT [SOURCE_PORT]]  send one datagram, print the answer

The ask commands exit with 1 when no answer comes within TIMEOUT seconds (default 3). The UDP
socket is connected, so an ICMP port unreachable ends the wait at once.

Servers print "ready" once they listen, so a test waits for that line instead of sleeping.
"""

from __future__ import annotations

import hashlib
import socket
import sys
import threading

DEFAULT_TIMEOUT_S = 3.0


def tcp_server(port: int, name: str) -> None:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", port))
    server.listen(64)
    print("ready", flush=True)
    while True:
        connection, (client_ip, _port) = server.accept()
        threading.Thread(target=_answer, args=(connection, client_ip, name), daemon=True).start()


def _answer(connection: socket.socket, client_ip: str, name: str) -> None:
    with connection, connection.makefile("rwb") as stream:
        for line in stream:
            stream.write(f"{name} {client_ip} {line.decode().strip()}\n".encode())
            stream.flush()


def udp_server(port: int, name: str) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("0.0.0.0", port))
    print("ready", flush=True)
    while True:
        data, (client_ip, client_port) = server.recvfrom(65535)
        server.sendto(f"{name} {client_ip} {data.decode().strip()}".encode(), (client_ip, client_port))


def udp_port_server(port: int) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("0.0.0.0", port))
    print("ready", flush=True)
    while True:
        _data, client = server.recvfrom(65535)
        server.sendto(str(client[1]).encode(), client)


def tcp_hash_server(port: int) -> None:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", port))
    server.listen(8)
    print("ready", flush=True)
    while True:
        connection, _ = server.accept()
        with connection:
            digest, count = hashlib.sha256(), 0
            while chunk := connection.recv(1 << 20):
                digest.update(chunk)
                count += len(chunk)
            connection.sendall(f"{count} {digest.hexdigest()}\n".encode())


def tcp_ask(host: str, port: int, message: str, timeout: float) -> int:
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            connection.sendall(message.encode() + b"\n")
            answer = connection.makefile("rb").readline().decode().strip()
    except OSError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if not answer:
        print("error: connection closed without an answer", file=sys.stderr)
        return 1
    print(answer)
    return 0


def udp_ask(host: str, port: int, message: str, timeout: float, source_port: int = 0) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", source_port))
        sock.settimeout(timeout)
        try:
            sock.connect((host, port))
            sock.send(message.encode())
            answer = sock.recv(65535)
        except OSError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    print(answer.decode())
    return 0


def main(argv: list[str]) -> int:
    command, *args = argv
    if command == "tcp-server":
        tcp_server(int(args[0]), args[1])
    elif command == "udp-server":
        udp_server(int(args[0]), args[1])
    elif command == "udp-port-server":
        udp_port_server(int(args[0]))
    elif command == "tcp-hash-server":
        tcp_hash_server(int(args[0]))
    elif command == "tcp-ask":
        timeout = float(args[3]) if len(args) > 3 else DEFAULT_TIMEOUT_S
        return tcp_ask(args[0], int(args[1]), args[2], timeout)
    elif command == "udp-ask":
        timeout = float(args[3]) if len(args) > 3 else DEFAULT_TIMEOUT_S
        return udp_ask(args[0], int(args[1]), args[2], timeout, int(args[4]) if len(args) > 4 else 0)
    else:
        print(f"unknown command {command!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
