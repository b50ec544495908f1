"""The Locust SLO plugin: run ids and trace context on every request, the SLO tab, the verdict.

Importing `slo.locust.plugin` imports Locust, which monkey-patches the process with gevent:
nothing else in `slo` imports this subpackage. `context` and `live` are plain Python (no
Locust) so they can be tested alone; `plugin`, `hooks` and `web` run inside Locust.
"""
