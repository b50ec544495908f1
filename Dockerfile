# One image for the whole project: the five SUT services, the collector (`slo collect`), the
# gate (`slo gate`) and Locust (master and workers). docker-compose.yml picks the command.
#
# Dependencies (core + the [locust] and [sut] extras) are installed from pyproject.toml in their own layer, before the sources are
# copied, so editing code does not reinstall them.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; x = p['optional-dependencies']; print('\n'.join(p['dependencies'] + x['locust'] + x['sut']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The sources, the SLO spec and the Locust journeys; .dockerignore keeps the rest out.
COPY . ./
RUN pip install --no-deps . \
    && useradd --create-home --uid 10001 app \
    && mkdir -p /data \
    && chown app /data /app

USER app
# Same relative paths as on the host: `slo.yaml`, `loadtests/locustfile.py`, `reports/`.
WORKDIR /app
CMD ["slo", "--help"]
