# End-to-end layer: one test body (tests/e2e) against three drivers. See docs/e2e.md.

# -s: the body prints its progress (what it waits for) as it goes.
# TAG: the image tag the containers and kind drivers run (and retag for the upgrade step).
E2E_PYTEST = TAG=$(TAG) $(UV) run --frozen pytest tests/e2e -m e2e -p no:cacheprovider --durations=0 -rs -s

.PHONY: e2e
e2e: e2e-processes e2e-containers ## End-to-end: the processes driver, then containers when Docker is up

.PHONY: e2e-processes
e2e-processes: setup browser ## End-to-end against local processes (PostgreSQL, gRPC servers, webserver, daemon)
	@echo "==> e2e: processes driver"
	@$(E2E_PYTEST) --driver processes

.PHONY: e2e-containers
e2e-containers: setup ## End-to-end with each location's gRPC server from its image (builds the images)
	@if bash infra/docker/ensure-docker.sh; then \
		$(MAKE) --no-print-directory images && \
		echo "==> e2e: containers driver" && \
		$(E2E_PYTEST) --driver containers; \
	else \
		echo "==> e2e: containers driver SKIPPED: no Docker engine could be started here"; \
	fi

.PHONY: e2e-kind
e2e-kind: setup tools ## End-to-end on kind (E2E_KIND_REUSE=1: the cluster make kind-deploy made, TAG=its tag)
	@echo "==> e2e: kind driver"
	@$(E2E_PYTEST) --driver kind

.PHONY: browser
browser: ## Debian's chromium for the UI check (skipped with a message where apt cannot install)
	@command -v chromium >/dev/null 2>&1 || { \
		echo "==> installing chromium (Debian) for the UI check"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
			|| echo "==> chromium not installed: the UI test will skip"; \
	}

CI_SLOW += e2e
