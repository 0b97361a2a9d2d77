"""A child process we own: started in its own session (so its whole group can be signalled),
output copied to a log file with the last lines kept for error messages, stopped with SIGTERM
then SIGKILL after a grace period. Used by the worker for llama-server and by the CLI for the
services it starts.

The output is drained for as long as the child lives, in chunks, whatever it writes: a line
longer than any buffer, or a log file that cannot be written, must never leave the pipe full,
or the child blocks on its next write and hangs while looking alive.

Signals go to the group only while its leader provably has not been reaped (checked through a
pidfd): once reaped, its pid may be handed to an unrelated new process, which would then get
our signal — kernels that recycle pids quickly make that a real hazard.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

logger = logging.getLogger(__name__)


_PR_SET_PDEATHSIG = 1
_READ_CHUNK = 64 * 1024
TAIL_LINE_CHARS = 2000  # a kept (or echoed) output line is cut to this length


def _death_signal_hook(sig: int) -> Callable[[], None]:
    """Runs in the child before exec: the kernel sends it `sig` when we die, even by SIGKILL,
    so no llama-server outlives its worker and no service outlives `mesh-llm serve`. If we
    died between the fork and the prctl, the child is already an orphan: it signals itself."""
    parent = os.getpid()

    def hook() -> None:
        if sys.platform.startswith("linux"):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return hook


class ChildProcess:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        echo: bool = False,
        ignore_sigpipe: bool = False,
        death_signal: int | None = signal.SIGTERM,
    ) -> None:
        """`death_signal` is what the child gets when this process dies: SIGTERM for a child
        that must shut down cleanly, SIGKILL for one that holds no state (a llama-server
        would otherwise linger for minutes finishing requests nobody waits for), None to
        let it outlive us."""
        self.name = name
        self.argv = list(argv)
        self.env = dict(env) if env is not None else None
        self.log_path = log_path
        self.echo = echo
        self.ignore_sigpipe = ignore_sigpipe
        self.death_signal = death_signal
        self.tail: collections.deque[str] = collections.deque(maxlen=20)
        self._proc: asyncio.subprocess.Process | None = None
        self._pump: asyncio.Task[None] | None = None
        self._pidfd: int | None = None
        self._reaped_early = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def frozen(self) -> bool:
        """Stopped by a signal (SIGSTOP, SIGTSTP) or a tracer: alive, but answering nothing."""
        if not self.running or self._proc is None:
            return False
        try:
            stat = Path(f"/proc/{self._proc.pid}/stat").read_text()
        except OSError:
            return False
        return stat.rpartition(")")[2].split()[:1] in (["T"], ["t"])

    def last_output(self, lines: int = 3) -> str:
        return " | ".join(list(self.tail)[-lines:])

    async def start(self) -> None:
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
            # Python ignores SIGPIPE; restore_signals=False keeps it ignored in the child, so an
            # rpc-server survives its host dying mid-write.
            restore_signals=not self.ignore_sigpipe,
            preexec_fn=_death_signal_hook(self.death_signal) if self.death_signal else None,
        )
        self._reaped_early = False
        try:
            self._pidfd = os.pidfd_open(self._proc.pid)
        except ProcessLookupError:  # already exited and reaped by the child watcher
            self._reaped_early = True
        except (AttributeError, OSError):  # no pidfds here: fall back to the return code
            self._pidfd = None
        self._pump = asyncio.create_task(self._copy_output(), name=f"{self.name}-output")
        logger.debug("started %s (pid %d): %s", self.name, self._proc.pid, " ".join(self.argv))

    async def _copy_output(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        log = self._open_log()
        partial = b""
        overlong = False  # inside a line whose start was kept already: skip to its end
        while chunk := await self._proc.stdout.read(_READ_CHUNK):
            log = self._write_log(log, chunk)
            *lines, rest = chunk.split(b"\n")
            for raw in lines:
                if not overlong:
                    self._keep_line(partial + raw)
                partial, overlong = b"", False
            if not overlong:
                partial += rest
                if len(partial) > TAIL_LINE_CHARS:
                    self._keep_line(partial)
                    partial, overlong = b"", True
        if partial:
            self._keep_line(partial)
        if log is not None:
            log.close()

    def _open_log(self) -> BinaryIO | None:
        if self.log_path is None:
            return None
        try:
            return self.log_path.open("ab")
        except OSError as exc:
            logger.warning("cannot write %s's log %s: %s", self.name, self.log_path, exc)
            return None

    def _write_log(self, log: BinaryIO | None, chunk: bytes) -> BinaryIO | None:
        """The log, or None once writing it has failed (a full disk): draining goes on."""
        if log is None:
            return None
        try:
            log.write(chunk)
            log.flush()
        except OSError as exc:
            logger.warning("stopped writing %s's log %s: %s", self.name, self.log_path, exc)
            with contextlib.suppress(OSError):
                log.close()
            return None
        return log

    def _keep_line(self, raw: bytes) -> None:
        line = raw[:TAIL_LINE_CHARS].decode(errors="replace").rstrip()
        if line:
            self.tail.append(line)
            if self.echo:
                print(line, flush=True)

    async def wait(self) -> int:
        assert self._proc is not None
        code = await self._proc.wait()
        if self._pump is not None:
            # a child that outlived the leader may hold the output pipe open: stop copying
            done, _ = await asyncio.wait({self._pump}, timeout=2)
            if not done:
                self._pump.cancel()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        return code

    def _leader_unreaped(self) -> bool:
        """True while the leader's pid (our group id) cannot belong to anyone else."""
        if self._proc is None or self._proc.returncode is not None:
            return False
        if self._pidfd is None:
            return not self._reaped_early
        try:
            signal.pidfd_send_signal(self._pidfd, 0)
        except ProcessLookupError:
            return False
        return True

    def signal(self, sig: int) -> None:
        if self._proc is not None and self._leader_unreaped():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, sig)

    async def stop(self, grace_s: float = 10.0) -> int | None:
        """SIGTERM to the process group, SIGKILL after `grace_s`. Idempotent."""
        if self._proc is None:
            return None
        if self.running and self.frozen:  # a stopped process cannot act on SIGTERM
            self.signal(signal.SIGKILL)
        elif self.running:
            self.signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self._proc.wait()), timeout=grace_s)
            except TimeoutError:
                logger.warning("%s ignored SIGTERM for %.1fs; killing it", self.name, grace_s)
                self.signal(signal.SIGKILL)
        code = await self.wait()
        # children that outlived the leader still carry its group id: make sure they are gone
        for pid in group_members(self._proc.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        return code


def group_members(pgid: int) -> list[int]:
    """The processes left in the group of a leader that has been reaped. If a process holds
    the pid `pgid` again, it is a newcomer given the recycled pid, and the group is its own."""
    table = process_table()
    if pgid in table:
        return []
    return [pid for pid, info in table.items() if info.pgid == pgid]


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    ppid: int
    pgid: int
    state: str  # "R", "S", "Z" (zombie) …
    command: str  # the command line, arguments separated by spaces


def process_table() -> dict[int, ProcessInfo]:
    """Every process /proc shows now (Linux; empty elsewhere)."""
    table: dict[int, ProcessInfo] = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(entry.path, "stat").read_text()
                command = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ")
                state, ppid, pgid = stat.rpartition(")")[2].split()[:3]
                pid = int(entry.name)
                table[pid] = ProcessInfo(pid, int(ppid), int(pgid), state, command.decode().strip())
    return table


class RestartBackoff:
    """When to restart a supervised process that exited — the same rule for the worker's
    llama-servers and rpc-servers and for the services `mesh-llm serve` runs. The delay
    doubles from `first_s` up to `max_s` with each exit in a row; a process that ran
    `stable_after_s` starts the count over. With `give_up_after`, that many exits within
    `window_s` mean it will not work: `exited` answers None instead of a delay."""

    def __init__(
        self,
        first_s: float,
        max_s: float,
        stable_after_s: float,
        give_up_after: int | None = None,
        window_s: float = 60.0,
    ) -> None:
        self.first_s = first_s
        self.max_s = max_s
        self.stable_after_s = stable_after_s
        self.give_up_after = give_up_after
        self.window_s = window_s
        self.streak = 0  # exits in a row, none of them after a stable run
        self._exits: list[float] = []

    def exited(self, now: float, ran_s: float) -> float | None:
        """The delay before the next start, or None: give up. `ran_s`: how long the process
        ran (or was ready) before this exit."""
        self.streak = 1 if ran_s >= self.stable_after_s else self.streak + 1
        self._exits = [t for t in self._exits if now - t < self.window_s] + [now]
        if self.give_up_after is not None and len(self._exits) >= self.give_up_after:
            return None
        return min(self.first_s * 2 ** (self.streak - 1), self.max_s)
