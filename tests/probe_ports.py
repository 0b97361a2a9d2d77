"""Run inside a network namespace: how each TCP port of a host answers a stranger (no
certificate). Prints one JSON object: port → "closed", "http" (plain HTTP/1 answer),
"h2" (plain HTTP/2, e.g. gRPC without TLS), "tls-open" (TLS without a client certificate,
and an HTTP answer), "tls-refused" (TLS that wants a certificate we do not have), or
"silent" (accepts, says nothing recognisable).

    python probe_ports.py HOST PORT [PORT ...]
"""

from __future__ import annotations

import json
import socket
import ssl
import sys

GET = b"GET / HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n"
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def first_bytes(host: str, port: int, payload: bytes) -> bytes | None:
    """What a plain connection gets back; None when the port refuses the connection."""
    try:
        sock = socket.create_connection((host, port), timeout=3)
    except ConnectionRefusedError:
        return None
    except OSError:
        return b""
    with sock:
        try:
            sock.sendall(payload)
            return sock.recv(64)
        except OSError:
            return b""


def tls_probe(host: str, port: int) -> str:
    """A TLS client without a certificate: does the server answer it?"""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        raw = socket.create_connection((host, port), timeout=3)
    except OSError:
        return "closed"
    try:
        with context.wrap_socket(raw, server_hostname="mesh-llm") as sock:
            sock.sendall(GET)
            answer = sock.recv(64)
    except ssl.SSLError as exc:
        text = str(exc).upper()
        if "WRONG_VERSION_NUMBER" in text or "RECORD_LAYER" in text or "UNEXPECTED_EOF" in text:
            return "not-tls"
        return "tls-refused"  # a certificate-required or handshake-failure alert
    except OSError:
        return "tls-refused"
    return "tls-open" if answer.startswith(b"HTTP/") else "tls-refused"


def classify(host: str, port: int) -> str:
    plain = first_bytes(host, port, GET)
    if plain is None:
        return "closed"
    if plain.startswith(b"HTTP/"):
        return "http"
    h2 = first_bytes(host, port, H2_PREFACE) or b""
    if len(h2) >= 4 and h2[3] == 4:  # a SETTINGS frame back
        return "h2"
    secured = tls_probe(host, port)
    return "silent" if secured == "not-tls" else secured


if __name__ == "__main__":
    target = sys.argv[1]
    print(json.dumps({port: classify(target, int(port)) for port in sys.argv[2:]}))
