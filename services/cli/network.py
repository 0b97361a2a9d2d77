"""Which address this machine is reached on, and which to listen on."""

from __future__ import annotations

import fcntl
import socket
import struct

from meshllm.core.access import is_loopback

_SIOCGIFADDR = 0x8915


def default_route_interface(route_table: str = "/proc/net/route") -> str | None:
    try:
        with open(route_table) as f:
            next(f)
            for line in f:
                fields = line.split()
                if len(fields) > 2 and fields[1] == "00000000":
                    return fields[0]
    except (OSError, StopIteration):
        return None
    return None


def interface_address(name: str) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            packed = fcntl.ioctl(
                sock.fileno(), _SIOCGIFADDR, struct.pack("256s", name[:15].encode())
            )
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])


def lan_address() -> str:
    """The IPv4 address of the interface holding the default route; loopback when there is
    none (a machine on its own)."""
    interface = default_route_interface()
    return (interface and interface_address(interface)) or "127.0.0.1"


def bind_address(host: str) -> str:
    """Mesh-facing ports listen on every interface unless the mesh is this machine alone."""
    return "127.0.0.1" if is_loopback(host) else "0.0.0.0"


def local_address(bind_host: str) -> str:
    """Where this machine reaches a port bound to `bind_host`."""
    return "127.0.0.1" if bind_host in ("0.0.0.0", "") else bind_host
