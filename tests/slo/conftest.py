"""tests/slo/ mirrors slo/: one folder per subpackage (ingest/, judge/, report/, cli/, gate/,
locust/), the top-level modules' tests here.

The test folders have no `__init__.py` on purpose: pytest's default (prepend) import mode
then imports every test module by its file name, so names must stay unique across tests/
(pytest stops with "import file mismatch" if two collide), and no folder shadows a real
package (`locust`, `slo`). Pytest puts the folder of this conftest on `sys.path`, which is
what lets the tests in the subfolders import the shared span generators (`spangen`,
`report_fixture`) that live here.
"""

import os

from hypothesis import settings

# CI replays the same examples every run (`.ci/run` sets HYPOTHESIS_PROFILE=ci): a new random
# counterexample found there fails a submission for a bug it did not touch. Locally each run
# explores new inputs, and what it finds goes in as an `@example`.
settings.register_profile("ci", derandomize=True, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
