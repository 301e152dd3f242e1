"""A turn is committed once save_turn returns: SIGKILL afterwards loses nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from avatar_rtc.storage import Store

REPO_ROOT = Path(__file__).resolve().parents[1]

# Writes turns forever, printing each id only after save_turn has returned.
WRITER = r"""
import asyncio, sys
from avatar_rtc.storage import CallRecord, Store, TurnRecord, new_id, utc_now

async def main(url: str) -> None:
    store = await Store.open(url)
    call = CallRecord(id=new_id(), started_at=utc_now())
    await store.create_call(call)
    print("call", call.id, flush=True)
    index = 0
    while True:
        turn = TurnRecord(id=new_id(), call_id=call.id, index=index, started_at=utc_now(),
                          user_text=f"question {index}", reply_text="answer " * 50)
        await store.save_turn(turn)
        print("turn", turn.id, flush=True)
        index += 1

asyncio.run(main(sys.argv[1]))
"""


async def test_turns_survive_sigkill(database_url: str) -> None:
    url = database_url  # a SQLite file, then a PostgreSQL database
    pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": pythonpath}
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WRITER,
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert child.stdout is not None and child.stderr is not None
    acked: list[str] = []
    call_id = ""
    try:
        while len(acked) < 100:
            line = await asyncio.wait_for(child.stdout.readline(), timeout=30)
            if not line:
                raise AssertionError((await child.stderr.read()).decode())
            kind, value = line.decode().split()
            if kind == "call":
                call_id = value
            else:
                acked.append(value)
    finally:
        # Killed mid-stream: the writer is busy with the next turn right now.
        child.send_signal(signal.SIGKILL)
        await child.wait()
    assert child.returncode == -signal.SIGKILL

    store = await Store.open(url)
    try:
        stored = await store.turns(call_id)
    finally:
        await store.close()
    # Every acknowledged turn is there, in order; the writer may have got
    # further than we read before the kill landed.
    assert [t.id for t in stored][: len(acked)] == acked
