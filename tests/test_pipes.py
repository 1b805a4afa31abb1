"""The engine's pipe readers (engine/pipes.py) on real pipes, in-process: after a read, what the loop's
pipes receive waits for the gate's next tick and is read then, every pipe in the same wake-up (a child
printing a line at a time, or sixteen of them, costs the engine at most 1/PACE wake-ups a second); a
child printing flat out is read back to back; the end of a pipe is seen whether or not it waited."""

from __future__ import annotations

import asyncio
import os

from oxtui.engine.pipes import BUSY, PipeReader, ReadGate


class Pipe:
    """A real pipe, its reader on the running loop, and what the reader gave (one entry per read)."""

    def __init__(self, gate: ReadGate) -> None:
        r, self.w = os.pipe()
        os.set_blocking(r, False)
        self.chunks: list[bytes] = []
        self.eof = asyncio.Event()
        self._new = asyncio.Event()
        self.reader = PipeReader(gate.loop, r, self._data, self.eof.set, gate)

    def _data(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self._new.set()

    async def next(self) -> bytes:
        await asyncio.wait_for(self._new.wait(), 10)
        self._new.clear()
        return self.chunks[-1]

    async def first_line_then_exit(self, last: bytes) -> None:
        """A line, read at once (after it the gate holds reads for its pace); then the child's last
        words, and its exit (the pipe's end) while its pipe waits for the tick."""
        os.write(self.w, b"first\n")
        assert await self.next() == b"first\n"
        os.write(self.w, last)
        os.close(self.w)
        self.w = -1

    def close(self) -> None:
        self.reader.close()
        if self.w >= 0:
            os.close(self.w)


async def turns(n: int = 20) -> None:
    """Let the loop go round n times (each round polls every pipe it watches)."""
    for _ in range(n):
        await asyncio.sleep(0)


async def test_after_a_read_the_pipes_wait_for_the_tick_and_are_all_read_in_it():
    gate = ReadGate(asyncio.get_running_loop(), pace=3600)
    a, b = Pipe(gate), Pipe(gate)
    try:
        os.write(a.w, b"first\n")
        assert await a.next() == b"first\n", "after a quiet moment: at once"
        for i in range(30):            # a line at a time in both, the loop going round between them
            os.write(a.w, b"a %d\n" % i)
            os.write(b.w, b"b %d\n" % i)
            await turns(2)
        await turns()
        assert a.chunks == [b"first\n"] and b.chunks == [], "before the tick: nothing read"
        assert gate._tick is not None and gate._tick.when() == gate.last + 3600
        gate.tick()                    # the tick (without waiting an hour): both pipes, one wake-up
        assert a.chunks[-1] == b"".join(b"a %d\n" % i for i in range(30))
        assert b.chunks == [b"".join(b"b %d\n" % i for i in range(30))]
        assert not gate.waiting and gate._tick is None
    finally:
        a.close()
        b.close()


async def test_a_pipe_closed_while_it_waits_is_left_alone_at_the_tick():
    gate = ReadGate(asyncio.get_running_loop(), pace=3600)
    a, b = Pipe(gate), Pipe(gate)
    os.write(a.w, b"first\n")
    await a.next()
    os.write(b.w, b"waits\n")
    await turns()
    assert gate.waiting == [b.reader]
    b.close()                          # its worker gone: the fd is closed (and its number free)
    gate.tick()
    assert b.chunks == [] and b.reader.fd == -1
    a.close()


async def test_a_child_printing_flat_out_is_read_back_to_back():
    gate = ReadGate(asyncio.get_running_loop(), pace=3600)
    a = Pipe(gate)
    try:
        os.write(a.w, b"x" * (BUSY - 1) + b"\n")
        assert len(await a.next()) == BUSY
        for word in (b"small\n", b"again\n"):   # busy for a second: no waiting for the tick
            os.write(a.w, word)
            assert await a.next() == word
        assert not gate.waiting
    finally:
        a.close()


async def test_the_end_of_a_pipe_is_seen_after_a_wait():
    gate = ReadGate(asyncio.get_running_loop(), pace=0.05)
    a = Pipe(gate)
    await a.first_line_then_exit(b"last words\n")
    await asyncio.wait_for(a.eof.wait(), 10)
    assert a.chunks == [b"first\n", b"last words\n"] and a.reader.fd == -1 and a.reader.closed.is_set()


async def test_an_exited_process_s_last_words_are_read_at_once_whatever_the_gate_says():
    gate = ReadGate(asyncio.get_running_loop(), pace=3600)
    a = Pipe(gate)
    await a.first_line_then_exit(b"Traceback: boom\n")
    await turns()
    assert a.chunks == [b"first\n"] and gate.waiting == [a.reader]
    a.reader.read_now()                # its exit is being recorded: the traceback belongs in it
    assert a.chunks == [b"first\n", b"Traceback: boom\n"] and a.eof.is_set() and a.reader.fd == -1
    gate.tick()                        # the tick finds it closed: nothing more
    assert len(a.chunks) == 2
