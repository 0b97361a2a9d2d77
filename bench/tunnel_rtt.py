"""What an RPC tunnel adds per round trip: 64-byte ping-pongs to an echo server on loopback,
straight and through each tunnel, every endpoint in its own process as on real nodes:

- `tcp`: straight to the echo server (what `--rpc` to a loopback rpc-server pays);
- `mesh-tunnel (LOOP)`: the mesh's tunnel (worker/tunnel.py: TunnelClient → TunnelServer,
  mutual TLS with node certificates of a throwaway mesh), its processes on asyncio's own event
  loop or on uvloop;
- `stunnel-tls`: stunnel 5 in client and server mode with the same certificates (mutual TLS),
  when `stunnel` is installed.

Reported per path: round-trip time p50 and p99 (µs) and one-way bulk throughput (MB/s, what
a peer without the file receives its layers at). Multiply the added round-trip time by the
RPC round trips per token (bench/pipeline_split.py) for a tunnel's per-token cost.

    .venv/bin/python bench/tunnel_rtt.py --round-trips 5000 --markdown
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tunnel_ends import TunnelEnds, wait_port

from meshllm.core import pki
from meshllm.core.ports import free_port

MESH = "m-bench-tunnel"
ECHO = """
import socket, sys, threading
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
def serve(conn):
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while data := conn.recv(1 << 20):
        reply = data.replace(b"B", b"")  # bulk bytes are swallowed, pings echoed
        if reply:
            conn.sendall(reply)
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


@contextmanager
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for p in started:
            p.terminate()
        for p in started:
            p.wait(10)


def credentials(home: Path, node: str, ca: tuple) -> pki.Credentials:  # type: ignore[type-arg]
    key = pki.new_key()
    cert = pki.issue(ca[0], ca[1], key.public_key(), node=node, role=pki.NODE)
    creds = pki.Credentials(home / node)
    creds.save(ca[1], cert, key)
    return creds


def ping(port: int, round_trips: int, bulk_mb: int) -> dict[str, float]:
    sock = socket.create_connection(("127.0.0.1", port), 10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    payload = b"p" * 64
    times = []
    for i in range(round_trips + 200):
        start = time.perf_counter()
        sock.sendall(payload)
        got = 0
        while got < len(payload):
            got += len(sock.recv(65536))
        if i >= 200:  # warm-up
            times.append((time.perf_counter() - start) * 1e6)
    chunk = b"B" * (1 << 20)  # "B…": the echo server swallows bulk data
    start = time.perf_counter()
    for _ in range(bulk_mb):
        sock.sendall(chunk)
    sock.sendall(payload)  # an echoed ping after the bulk: every byte has arrived
    got = 0
    while got < len(payload):
        got += len(sock.recv(65536))
    bulk_s = time.perf_counter() - start
    sock.close()
    times.sort()
    return {
        "rtt_p50_us": round(statistics.median(times), 1),
        "rtt_p99_us": round(times[int(len(times) * 0.99)], 1),
        "bulk_mb_per_s": round(bulk_mb * 1.048576 / bulk_s, 1),
    }


def stunnel_conf(creds: pki.Credentials, mode: str, accept: int, connect: int, pid: Path) -> str:
    return textwrap.dedent(f"""\
        foreground = yes
        pid = {pid}
        debug = 0
        [rpc]
        {"client = yes" if mode == "client" else ""}
        accept = 127.0.0.1:{accept}
        connect = 127.0.0.1:{connect}
        cert = {creds.cert_path}
        key = {creds.key_path}
        CAfile = {creds.ca_path}
        verifyChain = yes
        requireCert = yes
        socket = l:TCP_NODELAY=1
        socket = r:TCP_NODELAY=1
        """)


def start_stunnel(
    stunnel: str,
    home: Path,
    peer: pki.Credentials,
    host: pki.Credentials,
    echo_port: int,
    started: list[subprocess.Popen[bytes]],
) -> int:
    """stunnel in server mode in front of the echo server and in client mode in front of
    that; the client's port."""
    s_port, c_port = free_port(), free_port()
    for name, creds, mode, accept, connect in (
        ("server", peer, "server", s_port, echo_port),
        ("client", host, "client", c_port, s_port),
    ):
        conf = home / f"stunnel-{name}.conf"
        conf.write_text(stunnel_conf(creds, mode, accept, connect, home / f"{name}.pid"))
        started.append(subprocess.Popen([stunnel, str(conf)], stderr=subprocess.DEVNULL))
        wait_port(accept)
    return c_port


def run(round_trips: int, bulk_mb: int, loops: list[str]) -> dict[str, dict[str, float]]:
    home = Path(tempfile.mkdtemp(prefix="mesh-bench-tunnel-"))
    ca = pki.create_ca(MESH)
    host, peer = credentials(home, "host", ca), credentials(home, "peer", ca)
    echo_port = free_port()
    results: dict[str, dict[str, float]] = {}
    with processes() as started:
        started.append(subprocess.Popen([sys.executable, "-c", ECHO, str(echo_port)]))
        wait_port(echo_port)
        results["tcp"] = ping(echo_port, round_trips, bulk_mb)

        for loop in loops:
            ends = TunnelEnds(host, peer, MESH, loop)
            try:
                local = ends.start(echo_port, free_port())
                results[f"mesh-tunnel ({loop})"] = ping(local, round_trips, bulk_mb)
            finally:
                ends.close()

        stunnel = shutil.which("stunnel") or shutil.which("stunnel4")
        if stunnel:
            try:
                port = start_stunnel(stunnel, home, peer, host, echo_port, started)
            except RuntimeError as exc:  # e.g. a library missing where it was unpacked
                print(f"stunnel left out: {exc}", file=sys.stderr)
            else:
                results["stunnel-tls"] = ping(port, round_trips, bulk_mb)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--round-trips", type=int, default=5000)
    parser.add_argument("--bulk-mb", type=int, default=256)
    parser.add_argument("--loops", default="asyncio,uvloop", help="event loops for the tunnel")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    results = run(args.round_trips, args.bulk_mb, args.loops.split(","))
    if not args.markdown:
        print(json.dumps(results, indent=2))
        return 0
    base = results["tcp"]["rtt_p50_us"]
    trips, bulk = args.round_trips, args.bulk_mb
    print(f"{os.cpu_count()} cores, {trips} round trips of 64 bytes, {bulk} MB bulk")
    print("\n| path | RTT p50 µs | RTT p99 µs | added p50 µs | bulk MB/s |\n|---|---|---|---|---|")
    for path, r in results.items():
        print(f"| {path} | {r['rtt_p50_us']} | {r['rtt_p99_us']} | "
              f"{r['rtt_p50_us'] - base:+.1f} | {r['bulk_mb_per_s']} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
