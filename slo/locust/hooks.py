"""Every request of HttpUser and FastHttpUser carries the trace context and the run id.

Locust's own `--otel` instruments requests/urllib3 through OpenTelemetry's instrumentors,
which leaves FastHttpUser (geventhttpclient) without context. Here both clients' `request`
method, the one path every `get`/`post`/... goes through, is wrapped once per process:

- the request becomes a client span of service `locust` whose `traceparent` and
  `baggage: slo.run_id=<id>` go into the headers (a header the Locust file set itself wins);
- under `slo gate` the slice file may name a host: a URL on Locust's `--host` is sent to that
  host instead, so one Locust process alternates between the baseline and the candidate
  deployment slice by slice, and the statistics keep the path as the request name.

No call in the user's Locust file: loading the plugin installs this.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from locust.clients import HttpSession
from locust.contrib.fasthttp import FastHttpSession

from slo.locust.context import CURRENT, TRACER

_MARK = "_slo_wrapped"


def install() -> None:
    """Wrap both clients' `request` (idempotent)."""
    for cls in (HttpSession, FastHttpSession):
        if not getattr(cls.request, _MARK, False):
            cls.request = _wrap(cls.request)  # type: ignore[method-assign]


def retarget(built: str, base_url: str | None, host: str) -> str:
    """`built` sent to `host` instead when it is a URL on the session's own base URL."""
    if not host or not base_url:
        return built
    base = base_url.rstrip("/")
    if built == base or built.startswith(base + "/") or built.startswith(base + "?"):
        return host + built[len(base):]
    return built


def _wrap(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def request(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        name = args[0] if args else kwargs.get("name")
        if name is None:
            name = getattr(self, "request_name", None)
        built = self._build_url(url)
        target = retarget(built, getattr(self, "base_url", None), CURRENT.host)
        if target != built:
            url = target
            if name is None:  # keep the statistics' row: the path, not the side's host
                parts = urlsplit(built)
                name = parts.path + (f"?{parts.query}" if parts.query else "")
            if args:
                args = (name, *args[1:])
            else:
                kwargs["name"] = name
        label = name or urlsplit(target).path or "/"
        span, trace_headers = TRACER.start(str(label), str(method).upper(), target)
        given = kwargs.get("headers") or {}
        lower = {k.lower() for k in given}
        kwargs["headers"] = {**{k: v for k, v in trace_headers.items() if k not in lower},
                             **given}
        try:
            resp = original(self, method, url, *args, **kwargs)
        except BaseException as e:
            TRACER.finish(span, 0, f"{type(e).__name__}: {e}")
            raise
        error = getattr(resp, "error", None)
        TRACER.finish(span, int(getattr(resp, "status_code", 0) or 0),
                      str(error) if error else None)
        return resp

    setattr(request, _MARK, True)
    return request
