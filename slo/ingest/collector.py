"""`slo collect`: an OTLP receiver (HTTP and gRPC) that writes the span store.

Why these choices:
- Every request is decoded completely before anything is stored, so a malformed request is
  answered 400 and leaves nothing behind; accepted spans are appended to the store's
  write-ahead segment before the 200 goes out, so a `kill -9` loses nothing that was acked.
- Decoding holds the GIL, so under load it runs in decoder processes (`slo.ingest.decoders`:
  each decodes a body and appends its spans to a WAL segment of its own before it answers),
  one per core by default, started once decoding keeps this process's own core busy
  (`decoders_when_busy`: a gate's or a test's trickle never pays for them); until then, or
  with `--decoders 0`, one request at a time behind a lock in this process (OTLP/HTTP on
  its event loop's own thread, see `HttpServer`; gRPC on its workers). Admission is by the
  bytes actually held (bodies read and not yet stored, plus the one being decompressed), not
  by requests: a slow sender holds only what it has sent, a burst of small exports all wait
  their turn for the decoder, and only when the memory budget is full is the answer 503 +
  Retry-After on HTTP (the OTLP retryable answer; the Python exporter ignores 429) or
  UNAVAILABLE with RetryInfo
  on gRPC. Memory stays bounded whatever the senders do; a gzip bomb stops at the size limit.
- The HTTP side is an asyncio server with h11 (see `HttpServer`): a connection costs no
  thread, and head and body each have a whole-phase deadline, so slow senders are cut off.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import logging
import os
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11

from slo.errors import PayloadError
from slo.ingest import otlp
from slo.ingest.decoders import DecoderPool, Ingested
from slo.ingest.store import StoreWriter
from slo.ports import check_bindable, wait_port

log = logging.getLogger("slo.collect")

TRACES_PATH = "/v1/traces"
RETRY_AFTER_S = 1
# gRPC status codes used in google.rpc.Status bodies.
_INVALID_ARGUMENT, _RESOURCE_EXHAUSTED, _UNAVAILABLE, _UNAUTHENTICATED = 3, 8, 14, 16
_UNIMPLEMENTED = 12


@dataclass
class CollectorConfig:
    store: str = ".slo/store"
    host: str = "127.0.0.1"
    port: int = 4318
    grpc_port: int = 4317  # negative: no gRPC receiver
    run_id: str = ""
    token: str | None = None
    forward: str | None = None
    max_body: int = otlp.DEFAULT_MAX_BODY
    max_inflight_bytes: int = 64 * 1024 * 1024  # bytes read and not yet stored, all requests
    max_connections: int = 4096  # open HTTP connections (at most what the fd limit allows)
    header_timeout_s: float = 10.0  # whole request line + headers (ReadHeaderTimeout)
    body_timeout_s: float = 60.0  # whole body, from the end of the headers (ReadTimeout)
    keepalive_timeout_s: float = 60.0  # idle between requests on one connection
    write_timeout_s: float = 10.0  # an answer must be taken by the peer within this
    grpc_workers: int = 8
    decoders: int = -1  # decoder processes (-1: one per core, at most 4; 0: decode in-process)
    # ... started once in-process decoding took this share of a 0.25 s window (0: at once)
    decoders_when_busy: float = 0.5
    segment_bytes: int = 32 * 1024 * 1024
    idle_seconds: float = 2.0


@dataclass
class Stats:
    requests: int = 0
    spans: int = 0
    rejected_spans: int = 0
    bad_requests: int = 0
    throttled: int = 0
    forward_dropped: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Busy(Exception):
    """No capacity for this request right now: answer 503/UNAVAILABLE with Retry-After."""


class Collector:
    """Protocol-independent core: admission, decoding, storing, forwarding."""

    def __init__(self, config: CollectorConfig):
        self.config = config
        self.writer = StoreWriter(
            config.store, segment_bytes=config.segment_bytes, idle_seconds=config.idle_seconds
        )
        self.stats = Stats()
        self._admit_lock = threading.Lock()
        self._held = 0  # bytes read (and decompressed) but not yet stored
        self._decode_lock = threading.Lock()
        self.closing = False
        self.forwarder = (Forwarder(config.forward, Path(config.store) / "forward")
                          if config.forward else None)
        size = config.decoders if config.decoders >= 0 else min(4, os.cpu_count() or 1)
        self.pool = DecoderPool(
            size, store=config.store, run_id=config.run_id, max_body=config.max_body,
            segment_bytes=config.segment_bytes, idle_seconds=config.idle_seconds,
            lock_fd=self.writer.lock_fd) if size > 0 else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._window = time.monotonic()  # busy time of in-process decoding since then
        self._busy = 0.0

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """The HTTP server's loop, where the decoder processes are driven from."""
        self._loop = loop
        if self.pool is not None and self.config.decoders_when_busy <= 0:
            self.pool.start(loop)

    def _decoded_locally(self, seconds: float) -> None:
        """Count `seconds` of in-process decoding; start the decoder processes once it took
        `decoders_when_busy` of a window of at least 0.25 s."""
        if self.pool is None or self.pool.started or self._loop is None:
            return
        self._busy += seconds
        now = time.monotonic()
        if now - self._window >= 0.25:
            if self._busy >= self.config.decoders_when_busy * (now - self._window):
                self._loop.call_soon_threadsafe(self.pool.start, self._loop)
            self._window, self._busy = now, 0.0

    # -------------------------------------------------------------- admission
    def hold(self, nbytes: int, expect: int = 0, own: int = 0) -> None:
        """Count `nbytes` more as held, or raise Busy (counted) when that and the `expect`ed
        bytes still to come would pass the budget. `own`: what this request holds already;
        when nobody else holds anything, anything is admitted, so one request up to the size
        limit always gets through."""
        with self._admit_lock:
            if self.closing or (
                self._held > own
                and self._held + nbytes + expect > self.config.max_inflight_bytes
            ):
                self.stats.throttled += 1
                raise Busy()
            self._held += nbytes

    def unhold(self, nbytes: int) -> None:
        if nbytes:
            with self._admit_lock:
                self._held -= nbytes

    @property
    def held(self) -> int:
        return self._held

    def count_throttled(self) -> None:
        with self._admit_lock:
            self.stats.throttled += 1

    def count_bad(self) -> None:
        with self._admit_lock:
            self.stats.bad_requests += 1

    def authorized(self, header: str | None) -> bool:
        if not self.config.token:
            return True
        scheme, _, token = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.config.token.encode())

    # -------------------------------------------------------------- ingest
    async def ingest_async(
        self, body: bytes, content_type: str | None, encoding: str | None
    ) -> Ingested:
        """`ingest_body` on the HTTP loop: by a decoder process when one is ready (this
        loop serves other connections meanwhile), else in this thread."""
        if self.pool is not None and self.pool.ready:
            # DecoderLost goes up (503): its spans may be in the WAL already, so they are
            # not decoded here again; the sender retries
            return self._counted(await self.pool.submit(body, content_type, encoding),
                                 body, content_type, encoding)
        return self.ingest_local(body, content_type, encoding)

    def ingest_body(
        self, body: bytes, content_type: str | None, encoding: str | None
    ) -> Ingested:
        """Decompress, decode and store one OTLP body (by a decoder process when one is
        ready). PayloadError: store nothing. From any thread but the HTTP loop's."""
        pool = self.pool
        if pool is not None and pool.ready and self._loop is not None:
            return self._counted(pool.submit_threadsafe(body, content_type, encoding),
                                 body, content_type, encoding)
        return self.ingest_local(body, content_type, encoding)

    def _counted(self, answer: dict[str, Any], body: bytes, content_type: str | None,
                 encoding: str | None) -> Ingested:
        """A decoder's answer as the outcome of `ingest_local` (the same errors, the same
        counts)."""
        error = answer.get("error")
        if error == "too_large":
            raise otlp.PayloadTooLarge(answer["text"])
        if error == "payload":
            raise PayloadError(answer["text"])
        if error is not None:
            raise OSError(f"could not store spans: {answer['text']}")
        done = Ingested(answer["spans"], answer["rejected"], answer["message"])
        with self._admit_lock:
            self.stats.requests += 1
            self.stats.spans += done.spans
            self.stats.rejected_spans += done.rejected
        if self.forwarder is not None and done.spans:
            raw = otlp.decompress(body, encoding, self.config.max_body)
            self.forwarder.submit(raw, "application/json" if otlp.is_json(content_type)
                                  else "application/x-protobuf")
        return done

    def ingest_local(
        self, body: bytes, content_type: str | None, encoding: str | None
    ) -> Ingested:
        """Decompress, decode and store one OTLP/HTTP body in this process. PayloadError:
        store nothing.

        Decoding holds the GIL, so it runs one request at a time; the WAL write happens
        after the decode lock is released (`StoreWriter.commit`), so the next request is
        decoded while this one is written, and requests decoded meanwhile share the write.
        The decompressed bytes stay counted as held until stored: at most one per thread
        that calls this (the HTTP event loop and the gRPC workers).
        """
        with self._decode_lock:
            began = time.perf_counter()
            raw = otlp.decompress(body, encoding, self.config.max_body)
            inflated = len(raw) if raw is not body else 0
            with self._admit_lock:  # bounded by the callers' thread count, never refused
                self._held += inflated
            try:
                decoded = otlp.decode(raw, content_type, self.config.run_id)
            except BaseException:
                self.unhold(inflated)
                raise
            finally:
                self._decoded_locally(time.perf_counter() - began)
        try:
            self._store(decoded)
        finally:
            self.unhold(inflated)
        if self.forwarder is not None and decoded.spans:
            self.forwarder.submit(raw, "application/json" if otlp.is_json(content_type)
                                  else "application/x-protobuf")
        return Ingested(decoded.spans, decoded.rejected, decoded.message)

    def _store(self, decoded: otlp.Decoded) -> None:
        self.writer.commit(decoded.table)
        with self._admit_lock:
            self.stats.requests += 1
            self.stats.spans += decoded.spans
            self.stats.rejected_spans += decoded.rejected

    def close(self, timeout: float = 10.0) -> None:
        """Refuse new requests (503), let those in flight finish, flush everything."""
        with self._admit_lock:  # after this, no request is admitted
            self.closing = True
        deadline = time.monotonic() + timeout
        while self._held and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.pool is not None:
            self.pool.kill()  # (closed by the HTTP loop on a clean stop)
        if self.forwarder is not None:
            self.forwarder.close()
        self.writer.close()


# ------------------------------------------------------------------------- HTTP

_MAX_HEAD = 64 * 1024  # request line and headers
_READ = 256 * 1024  # bytes asked of the socket at once
_BUSY_RAW = (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n"
             b"Connection: close\r\n\r\n")


class _Timeout(Exception):
    """A whole-phase deadline (head, body or answer) has passed."""


def _fd_budget() -> int:
    """How many connections the open-file limit leaves room for (raising the soft limit to
    the hard one first, as Go's runtime does), keeping some for the store and gRPC."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft != resource.RLIM_INFINITY and soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
    return 1 << 20 if soft == resource.RLIM_INFINITY else max(16, soft - 128)


class HttpServer:
    """OTLP/HTTP on one asyncio event loop (its own thread), HTTP/1.1 parsed by h11.

    Why not `http.server`: it spends a thread per connection and its timeout is per read, so
    a sender that trickles a byte a second holds a thread forever, and a few hundred of them
    lock everyone out. Here a connection costs a coroutine and a small buffer; the head and
    the body each have a deadline for the whole phase (the OTel Collector's
    ReadHeaderTimeout/ReadTimeout), so a slow sender is cut off however it trickles; and
    admission counts the body bytes actually read and held (`Collector.hold`), so slow
    senders hold next to nothing while a burst of small exports all get through.

    A body, once read, goes to a decoder process (`Collector.ingest_async`), and the loop
    serves other connections until its answer comes: the decode, about 70% of the CPU per
    span, no longer shares this process's GIL, and each decoder writes its own WAL segment.
    Without decoder processes (not started yet, or `decoders=0`) it is decoded and written on
    the loop's own thread, not handed to a thread pool. Why: decoding holds the GIL, so a pool
    thread could never decode while the loop runs Python anyway, and each hand-off cost two
    thread wake-ups and a GIL ping-pong between the loop and the decoder: the 4 pool threads
    spent 1.3-1.6x the CPU per span that the same decode took in one thread at the same time
    (per-thread CPU under bench/ingest.py's stream). The deadlines are whole-phase ones, so a
    decode of even the largest body (about a second for 20 MiB) cuts no sender off. With
    decoder processes every body read is held (and counted) until stored, so a flood of large
    exports meets the memory budget and its 503 + Retry-After.
    """

    def __init__(self, collector: Collector, host: str, port: int):
        self.collector = collector
        self.sock = socket.create_server((host, port), backlog=1024)
        self.sock.setblocking(False)
        self.server_address: tuple[str, int] = self.sock.getsockname()[:2]
        self.max_connections = min(collector.config.max_connections, _fd_budget())
        self.connections = 0
        self._active = 0  # requests between their head and their answer
        self._loop = asyncio.new_event_loop()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="otlp-http", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(30)

    def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let requests in flight finish (up to `grace` s), close the rest."""
        if self._thread.is_alive() and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(grace + 5)
        self.sock.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self, grace: float = 10.0) -> None:
        self._stopping = asyncio.Event()
        self.collector.attach(asyncio.get_running_loop())
        server = await asyncio.start_server(self._client, sock=self.sock, limit=_READ)
        self._ready.set()
        await self._stopping.wait()
        server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self._active and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.collector.pool is not None:  # their segments closed, for the final compaction
            await self.collector.pool.aclose()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        linger = True
        try:
            if self.connections > self.max_connections:
                self.collector.count_throttled()
                writer.write(_BUSY_RAW)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.drain(), 1.0)
                return
            await _Exchange(self, reader, writer).serve()
        except (_Timeout, ConnectionError, h11.ProtocolError):
            pass  # the peer was too slow, went away, or spoke no HTTP: just close
        except asyncio.CancelledError:
            linger = False  # stopping: end quietly (asyncio logs a cancelled callback)
        except Exception:
            log.exception("HTTP connection failed")
        finally:
            self.connections -= 1
            try:
                if linger:
                    await _linger_close(reader, writer)
                writer.transport.abort()
            finally:
                self._tasks.discard(task)


async def _linger_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Close after our last answer without losing it: send FIN, read and drop what the peer
    still sends for up to a second (closing with unread input sends a reset, which can
    destroy the answer in the peer's buffer), then close for good."""
    transport = writer.transport
    try:
        if not transport.is_closing() and transport.can_write_eof():
            transport.write_eof()
            async with asyncio.timeout(1.0):
                while await reader.read(_READ):
                    pass
    except (TimeoutError, ConnectionError, OSError, asyncio.CancelledError):
        pass
    finally:
        transport.abort()  # never wait on a peer that does not read


class _Exchange:
    """One HTTP connection: requests one after the other (keep-alive), each under deadlines."""

    def __init__(self, server: HttpServer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter):
        self.server = server
        self.c = server.collector
        self.cfg = server.collector.config
        self.reader = reader
        self.writer = writer
        self.h = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)
        self.loop = asyncio.get_running_loop()
        self.head_method = b""
        # bytes past a body read around h11 (see `_read_sized_body`): the next request's
        self.after_body: bytes | None = None

    async def _event(self, deadline: float) -> Any:
        """The next h11 event, reading as needed, or _Timeout once `deadline` passes."""
        while True:
            ev = self.h.next_event()
            if ev is not h11.NEED_DATA:
                return ev
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                raise _Timeout()
            try:
                async with asyncio.timeout(remaining):  # (wait_for makes a task per read)
                    data = await self.reader.read(_READ)
            except TimeoutError:
                raise _Timeout() from None
            self.h.receive_data(data)

    async def serve(self) -> None:
        deadline = self.loop.time() + self.cfg.header_timeout_s  # first head: from accept
        while True:
            try:
                ev = await self._event(deadline)
            except h11.RemoteProtocolError as e:
                await self._answer(e.error_status_hint, _INVALID_ARGUMENT,
                                   f"bad HTTP request: {e}", False, close=True)
                return
            if not isinstance(ev, h11.Request):
                return  # ConnectionClosed (or a peer that broke the protocol)
            self.server._active += 1
            try:
                await self._request(ev)
            finally:
                self.server._active -= 1
            if self.after_body is not None:  # the body was read around this h11.Connection
                if self.h.our_state is not h11.DONE:
                    return
                self.h = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)
                if self.after_body:  # (to h11, no bytes means the peer closed)
                    self.h.receive_data(self.after_body)
                self.after_body = None
            elif self.h.our_state is not h11.DONE or self.h.their_state is not h11.DONE:
                return
            else:
                self.h.start_next_cycle()
            if not self.h.trailing_data[0]:  # keep-alive: wait for the next request's bytes
                try:
                    async with asyncio.timeout(self.cfg.keepalive_timeout_s):
                        data = await self.reader.read(_READ)
                except TimeoutError:
                    return
                if not data:
                    return
                self.h.receive_data(data)
            deadline = self.loop.time() + self.cfg.header_timeout_s

    async def _request(self, req: h11.Request) -> None:
        c, cfg = self.c, self.cfg
        self.head_method = req.method
        body_deadline = self.loop.time() + cfg.body_timeout_s
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in req.headers}
        method = req.method.decode("latin-1")
        target = req.target.decode("latin-1")
        path = target.split("?", 1)[0].rstrip("/") or "/"
        ctype = headers.get("content-type", "")
        as_json = otlp.is_json(ctype)
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = None if chunked or "content-length" not in headers else \
            int(headers["content-length"])  # h11 has checked it is a number
        if path in ("/", "/healthz"):
            if method in ("GET", "HEAD"):
                return await self._plain(200, b"ok\n", body_deadline, length)
            return await self._refuse(405, _UNIMPLEMENTED, f"no {method} {path}; use GET",
                                      as_json, body_deadline, length, {"Allow": "GET, HEAD"})
        if path != TRACES_PATH:
            return await self._refuse(404, _UNIMPLEMENTED, f"unknown path {target}; POST OTLP "
                                      f"to {TRACES_PATH}", as_json, body_deadline, length)
        if method != "POST":
            return await self._refuse(405, _UNIMPLEMENTED, f"no {method} on {TRACES_PATH}; "
                                      "POST OTLP there", as_json, body_deadline, length,
                                      {"Allow": "POST"})
        auth = headers.get("authorization")
        if not c.authorized(auth):
            challenge = 'Bearer realm="otlp"' + (', error="invalid_token"' if auth else "")
            return await self._refuse(401, _UNAUTHENTICATED, "missing or wrong bearer token",
                                      as_json, body_deadline, length,
                                      {"WWW-Authenticate": challenge})
        base = ctype.split(";")[0].strip().lower()
        if base not in ("application/x-protobuf", "application/protobuf", "application/json"):
            return await self._refuse(415, _INVALID_ARGUMENT, f"unsupported Content-Type "
                                      f"{ctype!r}; use application/x-protobuf or "
                                      "application/json", as_json, body_deadline, length)
        limit = cfg.max_body
        if length is None and not chunked:
            return await self._answer(411, _INVALID_ARGUMENT, "Content-Length required",
                                      as_json, close=True)
        if length is not None and length > limit:
            return await self._refuse(413, _INVALID_ARGUMENT, f"request body is larger than "
                                      f"{limit} bytes", as_json, body_deadline, length)
        try:
            c.hold(0, expect=length or 0)  # the budget is full already: do not start
        except Busy:
            return await self._refuse(503, _UNAVAILABLE, "collector busy, retry later",
                                      as_json, body_deadline, length, _RETRY)
        if self.h.they_are_waiting_for_100_continue:
            self.writer.write(self.h.send(h11.InformationalResponse(status_code=100, headers=[])))
        held = 0
        try:
            body = await (self._read_body(body_deadline, limit, as_json) if length is None
                          else self._read_sized_body(body_deadline, length, as_json))
            if body is None:
                return None
            held = len(body)
            try:
                decoded = await c.ingest_async(body, ctype, headers.get("content-encoding"))
            except otlp.PayloadTooLarge as e:
                c.count_bad()
                return await self._answer(413, _INVALID_ARGUMENT, str(e), as_json)
            except PayloadError as e:
                c.count_bad()
                return await self._answer(400, _INVALID_ARGUMENT, str(e), as_json)
            except Exception as e:  # never let one request take the collector down
                log.exception("failed to store a request")
                return await self._answer(503, _UNAVAILABLE, f"could not store spans: {e}",
                                          as_json, extra=_RETRY)
        finally:
            c.unhold(held)
        return await self._send(200, otlp.success_body(decoded.rejected, decoded.message,
                                                       as_json), _ctype(as_json))

    async def _read_sized_body(self, deadline: float, length: int, as_json: bool
                               ) -> bytes | None:
        """A Content-Length body (the size checked against the limit already), read from the
        socket past h11, with `_read_body`'s deadline, admission and answers.

        Why: h11 copies every body byte through its receive buffer twice more (append, then
        slice and delete), about 220 us of CPU for a 145 kB export, a fifth of the HTTP side's
        cost per request; here the bytes go from the stream to the decoder in one join. h11
        still parses the head and frames the answer; it is left waiting for the body, so the
        next request on the connection gets a fresh h11.Connection (`serve`), fed whatever
        came after this body.
        """
        buffered = self.h.trailing_data[0]
        parts = [buffered[:length]] if buffered else []
        self.after_body = buffered[length:]
        held = 0
        try:
            while True:
                n = len(parts[-1]) if parts else 0
                if n:
                    try:
                        self.c.hold(n, own=held)
                    except Busy:
                        self.c.unhold(held)
                        got, held, parts = held + n, 0, []
                        await self._answer(503, _UNAVAILABLE, "collector busy, retry later",
                                           as_json, close=True, extra=_RETRY)
                        await self._drop(deadline, length - got)
                        return None
                    held += n
                if held >= length:
                    body = parts[0] if len(parts) == 1 else b"".join(parts)
                    held, parts = 0, []  # the caller holds len(body) from here on
                    return body
                remaining = deadline - self.loop.time()
                data = b""
                if remaining > 0:
                    try:
                        async with asyncio.timeout(remaining):
                            data = await self.reader.read(min(length - held, _READ))
                    except TimeoutError:
                        remaining = 0
                if remaining <= 0:
                    self.c.unhold(held)
                    held, parts = 0, []
                    await self._answer(408, _UNAVAILABLE, "request body not received within "
                                       f"{self.cfg.body_timeout_s:g} s", as_json, close=True)
                    return None
                if not data:
                    return None  # the sender went away mid-body
                parts.append(data)
        finally:
            self.c.unhold(held)

    async def _drop(self, deadline: float, length: int) -> None:
        """Read and drop the `length` bytes left of a refused sized body (within 5 s), so the
        sender sees the answer rather than a reset."""
        if length > 4 * self.cfg.max_body:
            return
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(max(0.0, min(deadline - self.loop.time(), 5.0))):
                while length > 0:
                    data = await self.reader.read(min(length, _READ))
                    if not data:
                        return
                    length -= len(data)

    async def _read_body(self, deadline: float, limit: int, as_json: bool) -> bytes | None:
        """The whole body, each chunk counted in `Collector.hold` as it arrives; None when
        the request was answered here (too slow, too large, no room, broken). A refused
        body's bytes are let go before the answer is sent: a sender that retries at once
        finds them free."""
        parts: list[bytes] = []
        held = 0

        def let_go() -> None:
            nonlocal held, parts
            self.c.unhold(held)
            held, parts = 0, []
        try:
            while True:
                try:
                    ev = await self._event(deadline)
                except _Timeout:
                    let_go()
                    await self._answer(408, _UNAVAILABLE, "request body not received within "
                                       f"{self.cfg.body_timeout_s:g} s", as_json, close=True)
                    return None
                except h11.RemoteProtocolError as e:
                    let_go()
                    await self._answer(400, _INVALID_ARGUMENT, f"bad request body: {e}",
                                       as_json, close=True)
                    return None
                if isinstance(ev, h11.EndOfMessage):
                    body = b"".join(parts)
                    held, parts = 0, []  # the caller holds len(body) from here on
                    return body
                if not isinstance(ev, h11.Data):
                    return None  # the sender went away mid-body
                n = len(ev.data)
                # a chunk announced larger than the limit is refused now, not after its
                # deadline (h11 keeps the rest of the announced chunk size here)
                announced = getattr(getattr(self.h, "_reader", None), "_bytes_in_chunk", 0)
                if held + n + (announced if isinstance(announced, int) else 0) > limit:
                    let_go()
                    await self._answer(413, _INVALID_ARGUMENT, f"request body is larger than "
                                       f"{limit} bytes", as_json, close=True)
                    return None
                try:
                    self.c.hold(n, own=held)
                except Busy:
                    let_go()
                    await self._answer(503, _UNAVAILABLE, "collector busy, retry later",
                                       as_json, close=True, extra=_RETRY)
                    await self._discard(deadline, None)
                    return None
                held += n
                parts.append(ev.data)
        finally:
            self.c.unhold(held)

    async def _discard(self, deadline: float, length: int | None) -> bool:
        """Read and drop the rest of a refused body (not held), so the sender sees the answer
        rather than a reset; False when it did not end in time or is too large to wait for."""
        if length is not None and length > 4 * self.cfg.max_body:
            return False
        seen = 0
        try:
            while True:
                ev = await self._event(min(deadline, self.loop.time() + 5.0))
                if isinstance(ev, h11.EndOfMessage):
                    return True
                if not isinstance(ev, h11.Data):
                    return False
                seen += len(ev.data)
                if seen > 4 * self.cfg.max_body:
                    return False
        except (_Timeout, h11.ProtocolError):
            return False

    async def _refuse(self, status: int, code: int, message: str, as_json: bool,
                      deadline: float, length: int | None, extra: dict[str, str] | None = None
                      ) -> None:
        """Answer without reading the body, then drop the body and keep the connection."""
        close = length is None or length > 4 * self.cfg.max_body
        await self._answer(status, code, message, as_json, close=close, extra=extra)
        if self.h.their_state is h11.SEND_BODY and not await self._discard(deadline, length):
            raise _Timeout()

    async def _plain(self, status: int, body: bytes, deadline: float, length: int | None) -> None:
        await self._send(status, body, "text/plain")
        if self.h.their_state is h11.SEND_BODY and not await self._discard(deadline, length):
            raise _Timeout()

    async def _answer(self, status: int, code: int, message: str, as_json: bool,
                      close: bool = False, extra: dict[str, str] | None = None) -> None:
        await self._send(status, otlp.error_body(code, message, as_json), _ctype(as_json),
                         extra, close)

    async def _send(self, status: int, body: bytes, content_type: str,
                    extra: dict[str, str] | None = None, close: bool = False) -> None:
        if self.h.our_state is not h11.SEND_RESPONSE:
            return  # already answered (or the connection broke): nothing more to say
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body))),
                   ("Server", "slo-collect"), *(extra or {}).items()]
        if close:
            headers.append(("Connection", "close"))
        data = self.h.send(h11.Response(status_code=status, headers=headers))
        if body and self.head_method != b"HEAD":
            data += self.h.send(h11.Data(data=body))
        data += self.h.send(h11.EndOfMessage())
        self.writer.write(data)
        try:
            async with asyncio.timeout(self.cfg.write_timeout_s):
                await self.writer.drain()
        except TimeoutError:
            raise _Timeout() from None


_RETRY = {"Retry-After": str(RETRY_AFTER_S)}


def _ctype(as_json: bool) -> str:
    return "application/json" if as_json else "application/x-protobuf"


def make_http_server(collector: Collector, host: str, port: int) -> HttpServer:
    return HttpServer(collector, host, port)


# ------------------------------------------------------------------------- gRPC


def make_grpc_server(collector: Collector, host: str, port: int) -> tuple[Any, int]:
    """An OTLP/gRPC TraceService server bound to host:port; returns (server, actual port).

    The method is registered with a raw-bytes request deserializer, so the request goes
    through the same decoder as OTLP/HTTP protobuf (and a malformed one is INVALID_ARGUMENT).
    Under pressure (the same memory budget as HTTP) the answer is UNAVAILABLE with a
    `google.rpc.RetryInfo`, which the OTLP spec makes retryable; there is no concurrent-RPC
    cap, whose RESOURCE_EXHAUSTED without RetryInfo clients must not retry.
    """
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

    busy_trailers = _retry_trailers("collector busy, retry later")

    def export(raw: bytes, context: Any) -> Any:
        md = dict(context.invocation_metadata())
        if not collector.authorized(md.get("authorization")):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        try:
            collector.hold(len(raw))
        except Busy:
            context.set_trailing_metadata(busy_trailers)
            context.abort(grpc.StatusCode.UNAVAILABLE, "collector busy, retry later")
        try:
            decoded = collector.ingest_body(raw, "application/x-protobuf", None)
        except otlp.PayloadTooLarge as e:
            collector.count_bad()
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(e))
        except PayloadError as e:
            collector.count_bad()
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except Exception as e:
            log.exception("failed to store a gRPC request")
            context.set_trailing_metadata(busy_trailers)
            context.abort(grpc.StatusCode.UNAVAILABLE, f"could not store spans: {e}")
        finally:
            collector.unhold(len(raw))
        resp = trace_service_pb2.ExportTraceServiceResponse()
        if decoded.rejected:
            resp.partial_success.rejected_spans = decoded.rejected
            resp.partial_success.error_message = decoded.message
        return resp

    limit = collector.config.max_body
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=collector.config.grpc_workers,
                                   thread_name_prefix="otlp-grpc"),
        options=[("grpc.max_receive_message_length", limit),
                 ("grpc.max_send_message_length", 1 << 20),
                 ("grpc.so_reuseport", 0)],  # a second collector must not share the port
    )
    handler = grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService",
        {"Export": grpc.unary_unary_rpc_method_handler(
            export, request_deserializer=None,
            response_serializer=trace_service_pb2.ExportTraceServiceResponse.SerializeToString)},
    )
    server.add_generic_rpc_handlers((handler,))
    actual = server.add_insecure_port(f"{host}:{port}")
    return server, actual


def _retry_trailers(message: str) -> tuple[tuple[str, bytes], ...]:
    """Trailing metadata that makes UNAVAILABLE a "retry after RETRY_AFTER_S" answer:
    the standard `grpc-status-details-bin` (a google.rpc.Status carrying RetryInfo, read by
    the Go SDK and the Collector) and `google.rpc.retryinfo-bin` (what the Python SDK reads)."""
    from google.protobuf import any_pb2, duration_pb2
    from google.rpc import error_details_pb2, status_pb2

    info = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=RETRY_AFTER_S))
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=_UNAVAILABLE, message=message, details=[detail])
    return (("grpc-status-details-bin", status.SerializeToString()),
            ("google.rpc.retryinfo-bin", info.SerializeToString()))


# ------------------------------------------------------------------------- forwarding


class Forwarder:
    """Sends what was received on to another OTLP/HTTP endpoint, off the ingest path.

    Every payload is first spooled to a file under the store (`forward/`), then sent by a
    background thread, oldest first, with back-off while the endpoint is down. So a slow or
    dead endpoint never slows ingest, nothing is lost when it comes back (even across a
    restart or a kill -9 of the collector), and memory stays flat. Only when the spool passes
    `max_spool_bytes` are the oldest payloads dropped, and counted.
    """

    def __init__(self, url: str, spool_dir: str | Path, max_spool_bytes: int = 1 << 30):
        url = url.rstrip("/")
        self.url = url if url.endswith(TRACES_PATH) else url + TRACES_PATH
        self.spool = Path(spool_dir)
        self.spool.mkdir(parents=True, exist_ok=True)
        for tmp in self.spool.glob("*.tmp"):
            tmp.unlink(missing_ok=True)
        self.max_spool_bytes = max_spool_bytes
        self._files: deque[Path] = deque(sorted(
            p for p in self.spool.iterdir() if p.suffix in (".pb", ".json")))
        self._bytes = sum(p.stat().st_size for p in self._files)
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._sending: Path | None = None
        self.dropped = 0
        self.sent = 0
        self.failing = False
        self._closing = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="otlp-forward", daemon=True)
        self._thread.start()

    def submit(self, body: bytes, content_type: str) -> None:
        ext = ".json" if otlp.is_json(content_type) else ".pb"
        path = self.spool / f"{time.time_ns():020d}-{next(self._seq):08d}{ext}"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(body)
        os.replace(tmp, path)
        with self._cond:
            self._files.append(path)
            self._bytes += len(body)
            while self._bytes > self.max_spool_bytes and len(self._files) > 1:
                old = self._files[0] if self._files[0] != self._sending else self._files[1]
                self._files.remove(old)
                self._drop(old)
            self._cond.notify()

    def _drop(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._bytes -= path.stat().st_size
            path.unlink()
        self.dropped += 1

    def pending(self) -> int:
        with self._cond:
            return len(self._files)

    def _run(self) -> None:
        import requests

        session = requests.Session()
        delay = 0.2
        while not self._stop.is_set():
            with self._cond:
                while not self._files and not self._closing:
                    self._cond.wait(0.5)
                if not self._files:
                    return  # closing, all sent
                path = self._sending = self._files[0]
            try:
                body = path.read_bytes()
            except FileNotFoundError:
                body = None
            ok = body is None
            if body is not None:
                ctype = "application/json" if path.suffix == ".json" else \
                    "application/x-protobuf"
                try:
                    r = session.post(self.url, data=body, headers={"Content-Type": ctype},
                                     timeout=10)
                    # 4xx other than 408/429 will never succeed: drop rather than block
                    ok = r.status_code < 500 and r.status_code not in (408, 429)
                except requests.RequestException:
                    ok = False
            with self._cond:
                self._sending = None
                if ok:
                    if self._files and self._files[0] == path:
                        self._files.popleft()
                    with contextlib.suppress(FileNotFoundError):
                        self._bytes -= len(body or b"")
                        path.unlink()
                    self.sent += body is not None
                    self.failing = False
                    delay = 0.2
                    continue
                self.failing = True
            self._stop.wait(delay)
            delay = min(delay * 2, 5.0)

    def close(self, timeout: float = 5.0) -> None:
        """Give spooled payloads `timeout` seconds to go out (none if the target is down);
        what is left stays in the spool and is sent after the next start."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self.failing:
            self._stop.set()
        self._thread.join(timeout)
        self._stop.set()
        self._thread.join(timeout)


# ------------------------------------------------------------------------- running


class Running:
    """A started collector: its addresses, and `stop()` for a clean, flushing shutdown."""

    def __init__(self, collector: Collector, http: HttpServer, grpc_server: Any,
                 grpc_port: int | None):
        self.collector = collector
        self.http = http
        self.grpc = grpc_server
        self.http_port = http.server_address[1]
        self.grpc_port = grpc_port
        self._stop = threading.Event()
        http.start()
        self._threads = [
            threading.Thread(target=self._maintain, name="store-maintain", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _maintain(self) -> None:
        while not self._stop.wait(0.25):
            try:
                self.collector.writer.maintain()
            except Exception:
                log.exception("store compaction failed; the WAL keeps the spans")

    def describe(self) -> str:
        host = self.collector.config.host
        grpc_part = f"OTLP/gRPC {host}:{self.grpc_port}" if self.grpc_port else "no OTLP/gRPC"
        return (f"slo collect listening: OTLP/HTTP http://{host}:{self.http_port}{TRACES_PATH}, "
                f"{grpc_part}, store {self.collector.config.store}")

    def stop(self) -> None:
        self._stop.set()
        grpc_stopped = self.grpc.stop(grace=2) if self.grpc is not None else None
        self.http.stop()
        if grpc_stopped is not None:
            grpc_stopped.wait(5)
        for t in self._threads:
            t.join(5)
        self.collector.close()


def start(config: CollectorConfig) -> Running:
    """Recover the store, bind both receivers and start serving (in background threads)."""
    collector = Collector(config)
    try:
        http = make_http_server(collector, config.host, config.port)
    except OSError as e:
        collector.close()
        raise OSError(f"cannot listen on {config.host}:{config.port}: {e.strerror or e}") from None
    grpc_server, grpc_port = None, None
    if config.grpc_port > 0:  # say "address in use" plainly, before gRPC logs its own error
        try:
            check_bindable(config.grpc_port, config.host)
        except OSError as e:
            http.stop()
            collector.close()
            raise OSError(f"cannot listen on {config.host}:{config.grpc_port}: "
                          f"{e.strerror or e}") from None
    if config.grpc_port >= 0:
        try:
            grpc_server, grpc_port = make_grpc_server(collector, config.host, config.grpc_port)
        except RuntimeError as e:
            http.stop()
            collector.close()
            raise OSError(f"cannot listen on {config.host}:{config.grpc_port}: {e}") from None
        grpc_server.start()
    return Running(collector, http, grpc_server, grpc_port)


def serve(config: CollectorConfig, ready: Callable[[Running], None] | None = None) -> Stats:
    """Run until SIGTERM or SIGINT, then stop cleanly (everything flushed to Parquet)."""
    running = start(config)
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        if ready:
            ready(running)
        while not stop.wait(0.5):
            pass
    finally:
        running.stop()
        for s, h in previous.items():
            signal.signal(s, h)
    if running.collector.forwarder is not None:
        running.collector.stats.forward_dropped = running.collector.forwarder.dropped
    return running.collector.stats


def wait_ready(host: str, port: int, timeout: float = 30.0) -> None:
    """Poll until something answers on host:port (for scripts that start a collector)."""
    wait_port(port, host, timeout)
