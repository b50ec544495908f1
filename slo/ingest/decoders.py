"""Decoder processes: the collector's decoding and WAL writing, off its own core.

Why processes: decoding an OTLP request into Arrow is Python work that holds the GIL (about
70% of the collector's CPU), so one process can never ingest faster than one core decodes,
and its HTTP side and compaction take turns with the decoder. Each decoder process gets the
request body as it came (still compressed), decompresses, decodes and appends the spans to a
WAL segment of its own (`WalWriter`), and only then answers with the counts (spans kept,
spans rejected and why): what crosses between the processes is the body in and about a
hundred bytes out, never the decoded table. The collector answers 200 after that answer,
so an acknowledged span is in the WAL exactly as before, and the store's owner compacts the
decoders' segments once they are closed, or their decoder is dead (see `slo.ingest.store`).

The protocol over the socket pair, both ways length-prefixed:
    collector -> decoder: !II (meta length, body length), meta (JSON), body
    decoder -> collector: !I (meta length), meta (JSON); the first one says it is ready

A decoder dies with its collector (PR_SET_PDEATHSIG, and end of input on its socket), and
holds the store's writer lock (inherited), so no new collector can take the store over while
one of them could still be writing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("slo.collect")

_REQ = struct.Struct("!II")
_REP = struct.Struct("!I")
#: requests handed to one decoder before its answer to the first comes back: the next one
#: waits in its socket, so the decoder never idles for a round trip
DEPTH = 2
#: a decoder that dies is replaced after this long (so a crashing one cannot spin), and
#: after this many deaths none is (the collector decodes in its own process again)
RESPAWN_S = 1.0
MAX_DEATHS = 10


class DecoderLost(Exception):
    """The decoder process died with this request in hand: answer 503 (the sender retries)."""


@dataclass
class Ingested:
    """What one request left in the store: spans kept, and how many were refused and why."""

    spans: int
    rejected: int = 0
    message: str = ""


# --------------------------------------------------------------------- the decoder process


def _die_with_parent(parent: int) -> None:
    """Be killed when the collector dies, even by kill -9 (Linux; elsewhere end of input on
    the socket ends this process after its current request)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the line above
        os._exit(0)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    """`n` bytes, or None at end of input (or a cut) before they all came."""
    if n == 0:
        return b""
    data = sock.recv(n, socket.MSG_WAITALL)
    if len(data) == n:
        return data
    parts = [data]
    got = len(data)
    while data and got < n:
        data = sock.recv(n - got, socket.MSG_WAITALL)
        parts.append(data)
        got += len(data)
    return b"".join(parts) if got == n else None


def _send(sock: socket.socket, meta: dict[str, Any]) -> None:
    m = orjson.dumps(meta)
    sock.sendall(_REP.pack(len(m)) + m)


def serve(sock: socket.socket, store: str, run_id: str, max_body: int, segment_bytes: int,
          idle_seconds: float) -> None:
    """Answer requests on `sock` until its end of input; then close the open segment."""
    from slo.errors import PayloadError
    from slo.ingest import otlp
    from slo.ingest.store import WalWriter

    writer = WalWriter(store, segment_bytes=segment_bytes, idle_seconds=idle_seconds)
    _send(sock, {"ready": os.getpid()})
    try:
        while True:
            ready, _, _ = select.select([sock], [], [], 0.25)
            if not ready:
                writer.close_idle()
                continue
            head = _recv_exact(sock, _REQ.size)
            if head is None:
                return
            mlen, blen = _REQ.unpack(head)
            meta_bytes = _recv_exact(sock, mlen)
            body = _recv_exact(sock, blen)
            if meta_bytes is None or body is None:
                return
            meta = orjson.loads(meta_bytes)
            reply: dict[str, Any]
            try:
                raw = otlp.decompress(body, meta["enc"], max_body)
                decoded = otlp.decode(raw, meta["ctype"], run_id)
                del body, raw
                writer.append(decoded.table)  # in the WAL before the answer (and the 200)
                reply = {"spans": decoded.spans, "rejected": decoded.rejected,
                         "message": decoded.message}
            except otlp.PayloadTooLarge as e:
                reply = {"error": "too_large", "text": str(e)}
            except PayloadError as e:
                reply = {"error": "payload", "text": str(e)}
            except Exception as e:  # noqa: BLE001 - a failed WAL write: nothing of it may be acked
                reply = {"error": "store", "text": f"{type(e).__name__}: {e}"}
            _send(sock, reply)
    finally:
        writer.close()


def main(argv: list[str]) -> int:
    cfg = orjson.loads(argv[0])
    _die_with_parent(cfg["parent"])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C stops the collector, which stops us
    sock = socket.socket(fileno=cfg["fd"])
    sock.setblocking(True)
    with contextlib.suppress(ConnectionError):
        serve(sock, cfg["store"], cfg["run_id"], cfg["max_body"], cfg["segment_bytes"],
              cfg["idle_seconds"])
    return 0


# --------------------------------------------------------------------- the collector's side


@dataclass
class _Decoder:
    proc: subprocess.Popen[bytes]
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    waiting: deque[asyncio.Future[dict[str, Any]]] = field(default_factory=deque)
    ready: bool = False


class DecoderPool:
    """`size` decoder processes, used from one asyncio loop (the collector's HTTP loop).

    `submit` hands a body to the decoder with the fewest requests in hand (at most `DEPTH`)
    and waits for its answer; other threads (gRPC) use `submit_threadsafe`. A decoder that
    dies fails the requests it had with `DecoderLost` and is replaced.
    """

    def __init__(self, size: int, *, store: str, run_id: str, max_body: int,
                 segment_bytes: int, idle_seconds: float, lock_fd: int):
        self.size = size
        self._cfg = {"store": str(Path(store).resolve()), "run_id": run_id,
                     "max_body": max_body, "segment_bytes": segment_bytes,
                     "idle_seconds": idle_seconds, "parent": os.getpid()}
        self._lock_fd = lock_fd
        self._decoders: list[_Decoder] = []  # connected
        self._procs: list[subprocess.Popen[bytes]] = []  # started, connected or not
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: list[asyncio.Future[None]] = []  # requests waiting for a free decoder
        self.closing = False
        self.started = False
        self.deaths = 0

    @property
    def ready(self) -> bool:
        return any(d.ready for d in self._decoders)

    def pids(self) -> list[int]:
        return [d.proc.pid for d in self._decoders]

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the processes (from the loop's thread); requests go to them once ready."""
        if self.started:
            return
        self.started = True
        self._loop = loop
        for _ in range(self.size):
            self._spawn()

    def _spawn(self) -> None:
        assert self._loop is not None
        if self.closing:
            return
        parent, child = socket.socketpair()
        env = dict(os.environ)
        here = str(Path(__file__).resolve().parents[2])  # the directory that holds `slo`
        env["PYTHONPATH"] = os.pathsep.join([here, *filter(None, [env.get("PYTHONPATH")])])
        cfg = {**self._cfg, "fd": child.fileno()}
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "slo.ingest.decoders", orjson.dumps(cfg).decode()],
                pass_fds=(child.fileno(), self._lock_fd), env=env, stdin=subprocess.DEVNULL)
        except OSError:
            log.exception("could not start a decoder process; decoding in the collector")
            parent.close()
            return
        finally:
            child.close()
        self._procs.append(proc)
        task = self._loop.create_task(self._run(proc, parent))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, proc: subprocess.Popen[bytes], sock: socket.socket) -> None:
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        d = _Decoder(proc, reader, writer)
        self._decoders.append(d)
        if self.closing:  # stopped before this one was connected: its input ends here
            writer.close()
        try:
            await self._read(reader)  # "ready"
            d.ready = True
            self._wake()
            while True:
                meta = await self._read(reader)
                fut = d.waiting.popleft()
                if not fut.done():
                    fut.set_result(meta)
                self._wake()
        except (asyncio.IncompleteReadError, ConnectionError, IndexError, ValueError):
            pass
        finally:
            d.ready = False
            self._decoders.remove(d)
            for fut in d.waiting:
                if not fut.done():
                    fut.set_exception(DecoderLost("the decoder process ended; retry"))
            d.waiting.clear()
            writer.close()
            self._wake()
            if not self.closing:
                self.deaths += 1
                again = self.deaths < MAX_DEATHS
                log.error("decoder process %d ended (exit %s); %s", proc.pid, proc.poll(),
                          "starting another" if again else
                          f"{self.deaths} have: decoding in the collector from now on")
                assert self._loop is not None
                if again:
                    self._loop.call_later(RESPAWN_S, self._spawn)
            with contextlib.suppress(Exception):
                await asyncio.get_running_loop().run_in_executor(None, proc.wait)
            with contextlib.suppress(ValueError):
                self._procs.remove(proc)

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> dict[str, Any]:
        (n,) = _REP.unpack(await reader.readexactly(_REP.size))
        meta: dict[str, Any] = orjson.loads(await reader.readexactly(n))
        return meta

    def _wake(self) -> None:
        """Every request waiting for a decoder looks again (each has its own future: a
        shared event cleared by one waiter could swallow the wake-up meant for another,
        and a free decoder would then idle)."""
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    async def submit(self, body: bytes, content_type: str | None, encoding: str | None
                     ) -> dict[str, Any]:
        """A decoder's answer for this body: {"spans", "rejected", "message"} once stored,
        or {"error": "payload" | "too_large" | "store", "text"}. DecoderLost if none is
        left or the one that had it died."""
        assert self._loop is not None
        while True:
            free = [d for d in self._decoders if d.ready and len(d.waiting) < DEPTH]
            if free:
                break
            if not self.ready or self.closing:
                raise DecoderLost("no decoder process is running")
            turn: asyncio.Future[None] = self._loop.create_future()
            self._waiters.append(turn)
            await turn
        d = min(free, key=lambda d: len(d.waiting))
        meta = orjson.dumps({"ctype": content_type, "enc": encoding})
        fut: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        d.waiting.append(fut)
        d.writer.write(_REQ.pack(len(meta), len(body)) + meta)
        d.writer.write(body)
        return await fut

    def submit_threadsafe(self, body: bytes, content_type: str | None, encoding: str | None
                          ) -> dict[str, Any]:
        """`submit` from another thread than the loop's."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(
            self.submit(body, content_type, encoding), self._loop).result()

    async def aclose(self, timeout: float = 10.0) -> None:
        """End every decoder's input; each closes its segment and exits (killed if it has
        not within `timeout`)."""
        self.closing = True
        self._wake()
        for d in list(self._decoders):
            with contextlib.suppress(Exception):
                d.writer.close()
        deadline = time.monotonic() + timeout
        for proc in list(self._procs):
            while proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        self.kill()  # (one that never connected, or hangs)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    def kill(self) -> None:
        """Kill what is still running (a segment it held is compacted as it is)."""
        self.closing = True
        for proc in list(self._procs):
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
