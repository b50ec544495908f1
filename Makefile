# Everything runs inside .venv/, created on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

BUGS ?=
DURATION ?=
USERS ?=

.PHONY: venv test lint up gate bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[all,dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

up: $(STAMP)
	$(BIN)/sut up

gate: $(STAMP)
	$(BIN)/slo gate $(if $(BUGS),--bugs $(BUGS)) $(if $(DURATION),--duration $(DURATION)) $(if $(USERS),--users $(USERS))

bench: $(STAMP)
	for f in bench/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) .slo reports
