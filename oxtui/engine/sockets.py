"""The shared listening socket: bound once by the engine, handed to every instance as fd 3.

Kept open for the engine's whole life, so connections queued in its backlog survive every
restart, scale-down and reload. SO_REUSEPORT is deliberately not used: a per-instance socket
drops its queued connections when that instance closes it.
"""

from __future__ import annotations

import errno
import fcntl
import socket

BACKLOG = 4096


class ListenError(Exception):
    pass


def bind_listener(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as e:
        sock.close()
        addr = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        if e.errno == errno.EADDRINUSE:
            raise ListenError(f"{addr} is already in use by another program; stop it or change `listen`") from None
        if e.errno == errno.EACCES:
            raise ListenError(f"{addr}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE); "
                              "use a port >= 1024") from None
        if e.errno == errno.EADDRNOTAVAIL:
            raise ListenError(f"{addr}: this machine has no such address; use 127.0.0.1 or 0.0.0.0") from None
        raise ListenError(f"{addr}: cannot listen ({e.strerror})") from None
    # Instances block in accept(); keep it blocking. Move it above fd 9 so the dup2 onto fd 3
    # in the child never targets the socket itself.
    if sock.fileno() < 10:
        new = fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD_CLOEXEC, 10)
        fresh = socket.socket(fileno=new)
        sock.close()
        sock = fresh
    return sock

