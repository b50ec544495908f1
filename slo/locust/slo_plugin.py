"""Locust file that only loads the SLO plugin: `locust -f yours.py,<this file>`.

`slo gate` adds it beside any Locust file, so the file needs no edit. (Locust names a module
after its file name; this one is distinct from the usual `locustfile`.)
"""

from slo.locust import plugin  # noqa: F401  (registers the listeners and the request hooks)
