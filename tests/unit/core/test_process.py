"""Child processes and their groups, with real processes: stragglers are swept, and nothing is
signalled through a pid that may have been recycled."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import pid_alive, start_time

from meshllm.core.process import TAIL_LINE_CHARS, ChildProcess, RestartBackoff, group_members


async def test_stop_sweeps_children_that_outlived_the_leader() -> None:
    child = ChildProcess("shell", ["sh", "-c", "sleep 60 >/dev/null & echo $!; exit 0"])
    await child.start()
    for _ in range(100):
        if child.tail:
            break
        await asyncio.sleep(0.05)
    orphan = int(child.tail[0])
    assert await child.wait() == 0
    assert pid_alive(orphan)
    await child.stop()
    for _ in range(100):
        if not pid_alive(orphan):
            break
        await asyncio.sleep(0.05)
    assert not pid_alive(orphan)


async def test_signal_after_the_leader_is_reaped_reaches_nobody() -> None:
    child = ChildProcess("short", ["sleep", "0.2"])
    await child.start()
    assert child._pidfd is not None
    # reaped behind asyncio's back, as a child watcher thread does before the loop hears of it
    with contextlib.suppress(ChildProcessError):  # or the watcher thread got there first
        os.waitpid(child.pid or 0, 0)  # noqa: ASYNC222 - blocking on purpose: no await here
    assert child.returncode is None  # the loop does not know yet
    assert not child._leader_unreaped()
    child.signal(signal.SIGTERM)  # must not reach a process that got the recycled pid


def test_a_group_whose_leader_lives_is_not_swept() -> None:
    leader = subprocess.Popen(
        ["sh", "-c", "sleep 60 & echo $!; wait"],
        start_new_session=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert leader.stdout is not None
    orphan = int(leader.stdout.readline())
    try:
        assert group_members(leader.pid) == []  # a live leader: the group is not ours to sweep
        leader.kill()
        leader.wait()
        assert group_members(leader.pid) == [orphan]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(orphan, signal.SIGKILL)


async def test_output_is_drained_whatever_its_lines() -> None:
    """A 1 MB line (over asyncio's 64 KiB line limit) and then 8 MB more: the child must
    finish, which it cannot if the pipe stops being drained."""
    script = (
        "import sys\n"
        "sys.stdout.write('x' * 1_000_000 + '\\n')\n"
        "sys.stdout.write(('y' * 1000 + '\\n') * 8000)\n"
        "sys.stdout.write('z' * 300_000 + '\\nlast words')\n"  # no newline at the end
        "sys.stdout.flush()\n"
    )
    child = ChildProcess("chatty", [sys.executable, "-c", script])
    await child.start()
    assert await asyncio.wait_for(child.wait(), timeout=30) == 0
    assert all(len(line) <= TAIL_LINE_CHARS for line in child.tail)
    assert list(child.tail)[-3:] == ["y" * 1000, "z" * TAIL_LINE_CHARS, "last words"]


async def test_an_unwritable_log_does_not_stop_the_draining(tmp_path: Path) -> None:
    log = tmp_path / "gone" / "child.log"
    child = ChildProcess("chatty", [sys.executable, "-c", "print('a' * 10_000_000)"], log_path=log)
    await child.start()
    log.parent.chmod(0o500)  # the log's folder is read-only from now on (root ignores this,
    log.unlink(missing_ok=True)  # so the log is also removed: writing goes on, unseen)
    assert await asyncio.wait_for(child.wait(), timeout=30) == 0


def test_a_killed_parent_takes_its_sigkill_children_along(tmp_path: Path) -> None:
    """The parent dies by SIGKILL; its child, which ignores SIGTERM, must still die."""
    script = (
        "import asyncio, signal, sys\n"
        "from meshllm.core.process import ChildProcess\n"
        "async def main():\n"
        "    child = ChildProcess('stubborn', [sys.executable, '-c',\n"
        "        'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "time.sleep(60)'], death_signal=signal.SIGKILL)\n"
        "    await child.start()\n"
        "    print(child.pid, flush=True)\n"
        "    await asyncio.sleep(60)\n"
        "asyncio.run(main())\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    started = start_time(child)
    assert pid_alive(child, started)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5
    while pid_alive(child, started):
        assert time.monotonic() < deadline, "the child outlived its parent"
        time.sleep(0.05)


def test_restart_backoff_doubles_resets_after_a_stable_run_and_caps() -> None:
    backoff = RestartBackoff(first_s=1, max_s=5, stable_after_s=60)
    assert [backoff.exited(float(t), 1) for t in range(0, 400, 100)] == [1, 2, 4, 5]
    assert backoff.exited(500, ran_s=60) == 1  # it had run long enough: start over
    assert backoff.exited(600, ran_s=0) == 2


def test_restart_backoff_gives_up_after_too_many_exits_in_its_window() -> None:
    backoff = RestartBackoff(first_s=0.5, max_s=8, stable_after_s=60, give_up_after=3)
    assert backoff.exited(0, 0) == 0.5 and backoff.exited(10, 0) == 1
    assert backoff.exited(20, 0) is None
    spread = RestartBackoff(first_s=0.5, max_s=8, stable_after_s=60, give_up_after=3)
    assert [spread.exited(t, 0) is None for t in (0, 100, 200, 300)] == [False] * 4
