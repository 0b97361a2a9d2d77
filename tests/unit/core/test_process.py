"""Child processes and their groups, with real processes: stragglers are swept, and nothing is
signalled through a pid that may have been recycled."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess

from helpers import pid_alive

from meshllm.core.process import ChildProcess, group_members


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
