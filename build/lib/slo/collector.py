"""`slo collect`: an OTLP receiver (HTTP and gRPC) that writes the span store.

Why these choices:
- Every request is decoded completely before anything is stored, so a malformed request is
  answered 400 and leaves nothing behind; accepted spans are appended to the store's
  write-ahead segment before the 200 goes out, so a `kill -9` loses nothing that was acked.
- Decoding holds the GIL, so it runs one request at a time behind a lock; admission is bounded
  by request count and by body bytes, and anything beyond is answered 503 + Retry-After (the
  OTLP retryable answer; the Python exporter ignores 429). Memory stays bounded whatever the
  senders do; a gzip bomb is cut off at the size limit.
- The HTTP side is the standard library's threaded server (HTTP/1.1 keep-alive): at 512 spans
  per request the per-request cost is small next to decoding, and it needs no dependency.
"""

from __future__ import annotations

import contextlib
import hmac
import itertools
import logging
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from slo import otlp
from slo.errors import PayloadError
from slo.store import StoreWriter

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
    max_requests: int = 8  # requests in flight at once (reading, waiting, decoding)
    max_inflight_bytes: int = 64 * 1024 * 1024  # request bodies held at once
    max_connections: int = 256  # open HTTP connections (a thread each)
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
        self._inflight = 0
        self._inflight_bytes = 0
        self._decode_lock = threading.Lock()
        self.closing = False
        self.forwarder = (Forwarder(config.forward, Path(config.store) / "forward")
                          if config.forward else None)

    # -------------------------------------------------------------- admission
    def admit(self, nbytes: int) -> None:
        """Reserve room for a request of `nbytes` body bytes, or raise Busy."""
        with self._admit_lock:
            if self.closing or self._inflight >= self.config.max_requests or (
                self._inflight and self._inflight_bytes + nbytes > self.config.max_inflight_bytes
            ):
                self.stats.throttled += 1
                raise Busy()
            self._inflight += 1
            self._inflight_bytes += nbytes

    def release(self, nbytes: int) -> None:
        with self._admit_lock:
            self._inflight -= 1
            self._inflight_bytes -= nbytes

    def authorized(self, header: str | None) -> bool:
        if not self.config.token:
            return True
        scheme, _, token = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.config.token.encode())

    # -------------------------------------------------------------- ingest
    def ingest_body(
        self, body: bytes, content_type: str | None, encoding: str | None
    ) -> otlp.Decoded:
        """Decompress, decode and store one OTLP/HTTP body. PayloadError: store nothing."""
        with self._decode_lock:
            raw = otlp.decompress(body, encoding, self.config.max_body)
            decoded = otlp.decode(raw, content_type, self.config.run_id)
            self._store(decoded)
        if self.forwarder is not None and decoded.spans:
            self.forwarder.submit(raw, "application/json" if otlp.is_json(content_type)
                                  else "application/x-protobuf")
        return decoded

    def _store(self, decoded: otlp.Decoded) -> None:
        self.writer.append(decoded.table)
        self.stats.requests += 1
        self.stats.spans += decoded.spans
        self.stats.rejected_spans += decoded.rejected

    def close(self, timeout: float = 10.0) -> None:
        """Refuse new requests (503), let those in flight finish, flush everything."""
        with self._admit_lock:  # after this, no request is admitted
            self.closing = True
        deadline = time.monotonic() + timeout
        while self._inflight and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.forwarder is not None:
            self.forwarder.close()
        self.writer.close()


# ------------------------------------------------------------------------- HTTP


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "slo-collect"
    sys_version = ""
    timeout = 30  # a stalled sender never holds a thread forever
    collector: Collector  # set on the subclass made by `make_http_server`

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.address_string(), *args)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # one log line per request costs more than the request at 500 requests/s

    _date = (0, "")

    def date_time_string(self, timestamp: float | None = None) -> str:
        now = int(time.time())
        if _Handler._date[0] != now:  # formatting the Date header once a second is enough
            _Handler._date = (now, super().date_time_string(now))
        return _Handler._date[1]

    def _reply(self, status: int, body: bytes, content_type: str, extra: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, code: int, message: str, as_json: bool, extra=None) -> None:
        ctype = "application/json" if as_json else "application/x-protobuf"
        self._reply(status, otlp.error_body(code, message, as_json), ctype, extra)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        if self.path in ("/", "/healthz"):
            self._reply(200, b"ok\n", "text/plain")
        else:
            self._error(404 if self.path != TRACES_PATH else 405, _UNIMPLEMENTED,
                        f"no GET {self.path}; POST OTLP to {TRACES_PATH}", True)

    def _read_chunked(self, limit: int) -> bytes | None:
        parts, size = [], 0
        while True:
            line = self.rfile.readline(1024)
            try:
                n = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                return None
            if n < 0:
                return None
            if n == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            size += n
            if size > limit:
                raise otlp.PayloadTooLarge(f"request body is larger than {limit} bytes")
            chunk = self.rfile.read(n)
            if len(chunk) < n:
                return None  # the sender went away mid-chunk
            parts.append(chunk)
            self.rfile.readline(16)

    def _discard(self, n: int) -> None:
        while n > 0:
            chunk = self.rfile.read(min(n, 1 << 20))
            if not chunk:
                break
            n -= len(chunk)

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        c = self.collector
        ctype = self.headers.get("Content-Type", "")
        as_json = otlp.is_json(ctype)
        path = self.path.split("?", 1)[0].rstrip("/")
        length_h = self.headers.get("Content-Length")
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        try:  # with chunked transfer encoding, Content-Length is ignored (RFC 9112)
            length = int(length_h) if length_h is not None and not chunked else None
        except ValueError:
            length = -1
        if length is not None and length < 0:
            self.close_connection = True
            return self._error(400, _INVALID_ARGUMENT, "bad Content-Length", as_json)
        if path != TRACES_PATH:
            self._skip_body(length)
            return self._error(404, _UNIMPLEMENTED, f"unknown path {self.path}; use "
                               f"{TRACES_PATH}", as_json)
        if not c.authorized(self.headers.get("Authorization")):
            self._skip_body(length)
            return self._error(401, _UNAUTHENTICATED, "missing or wrong bearer token", as_json)
        base = ctype.split(";")[0].strip().lower()
        if base not in ("application/x-protobuf", "application/protobuf", "application/json"):
            self._skip_body(length)
            return self._error(415, _INVALID_ARGUMENT, f"unsupported Content-Type {ctype!r}; "
                               "use application/x-protobuf or application/json", as_json)
        limit = c.config.max_body
        if length is None and not chunked:
            self.close_connection = True
            return self._error(411, _INVALID_ARGUMENT, "Content-Length required", as_json)
        if length is not None and length > limit:
            self._skip_body(length)
            return self._error(413, _INVALID_ARGUMENT,
                               f"request body is larger than {limit} bytes", as_json)
        reserve = length if length is not None else limit
        try:
            c.admit(reserve)
        except Busy:
            self._skip_body(length)
            if length is None:
                self.close_connection = True
            return self._error(503, _UNAVAILABLE, "collector busy, retry later", as_json,
                               {"Retry-After": str(RETRY_AFTER_S)})
        try:
            try:
                body = self._read_chunked(limit) if length is None else self.rfile.read(length)
            except otlp.PayloadTooLarge as e:
                self.close_connection = True
                return self._error(413, _INVALID_ARGUMENT, str(e), as_json)
            if body is None or (length is not None and len(body) < length):
                self.close_connection = True  # the sender went away mid-body
                if body is None:
                    self._error(400, _INVALID_ARGUMENT, "bad chunked encoding", as_json)
                return None
            try:
                decoded = c.ingest_body(body, ctype, self.headers.get("Content-Encoding"))
            except otlp.PayloadTooLarge as e:
                c.stats.bad_requests += 1
                return self._error(413, _INVALID_ARGUMENT, str(e), as_json)
            except PayloadError as e:
                c.stats.bad_requests += 1
                return self._error(400, _INVALID_ARGUMENT, str(e), as_json)
            except Exception as e:  # never let one request take the collector down
                log.exception("failed to store a request")
                return self._error(503, _UNAVAILABLE, f"could not store spans: {e}", as_json,
                                   {"Retry-After": str(RETRY_AFTER_S)})
        finally:
            c.release(reserve)
        self._reply(200, otlp.success_body(decoded.rejected, decoded.message, as_json),
                    "application/json" if as_json else "application/x-protobuf")
        return None

    def _skip_body(self, length: int | None) -> None:
        """Read and drop a body we refuse, so keep-alive stays in sync (or close if huge)."""
        if length is None or length > 4 * self.collector.config.max_body:
            self.close_connection = True
        else:
            self._discard(length)


class _HTTPServer(ThreadingHTTPServer):
    """Thread per connection, but never more than `max_connections` of them: a sender that
    opens connections without end gets 503 on the extra ones, not a thread each."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    max_connections = 256

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._slots = threading.BoundedSemaphore(self.max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
                                b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def make_http_server(collector: Collector, host: str, port: int) -> ThreadingHTTPServer:
    handler = type("Handler", (_Handler,), {"collector": collector})
    server_class = type("HTTPServer", (_HTTPServer,),
                        {"max_connections": collector.config.max_connections})
    return server_class((host, port), handler)


# ------------------------------------------------------------------------- gRPC


def make_grpc_server(collector: Collector, host: str, port: int) -> tuple[Any, int]:
    """An OTLP/gRPC TraceService server bound to host:port; returns (server, actual port).

    The method is registered with a raw-bytes request deserializer, so the request goes
    through the same decoder as OTLP/HTTP protobuf (and a malformed one is INVALID_ARGUMENT).
    """
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

    def export(raw: bytes, context: Any) -> Any:
        md = dict(context.invocation_metadata())
        if not collector.authorized(md.get("authorization")):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        try:
            collector.admit(len(raw))
        except Busy:
            context.set_trailing_metadata((("retry-after", str(RETRY_AFTER_S)),))
            context.abort(grpc.StatusCode.UNAVAILABLE, "collector busy, retry later")
        try:
            decoded = collector.ingest_body(raw, "application/x-protobuf", None)
        except otlp.PayloadTooLarge as e:
            collector.stats.bad_requests += 1
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(e))
        except PayloadError as e:
            collector.stats.bad_requests += 1
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except Exception as e:
            log.exception("failed to store a gRPC request")
            context.abort(grpc.StatusCode.UNAVAILABLE, f"could not store spans: {e}")
        finally:
            collector.release(len(raw))
        resp = trace_service_pb2.ExportTraceServiceResponse()
        if decoded.rejected:
            resp.partial_success.rejected_spans = decoded.rejected
            resp.partial_success.error_message = decoded.message
        return resp

    limit = collector.config.max_body
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="otlp-grpc"),
        maximum_concurrent_rpcs=collector.config.max_requests,
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

    def __init__(self, collector: Collector, http: ThreadingHTTPServer, grpc_server: Any,
                 grpc_port: int | None):
        self.collector = collector
        self.http = http
        self.grpc = grpc_server
        self.http_port = http.server_address[1]
        self.grpc_port = grpc_port
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.2},
                             name="otlp-http", daemon=True),
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
        self.http.shutdown()
        if self.grpc is not None:
            self.grpc.stop(grace=2).wait(5)
        self.http.server_close()
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
        import socket

        probe = socket.socket()
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((config.host, config.grpc_port))
        except OSError as e:
            http.server_close()
            collector.close()
            raise OSError(f"cannot listen on {config.host}:{config.grpc_port}: "
                          f"{e.strerror or e}") from None
        finally:
            probe.close()
    if config.grpc_port >= 0:
        try:
            grpc_server, grpc_port = make_grpc_server(collector, config.host, config.grpc_port)
        except RuntimeError as e:
            http.server_close()
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
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
