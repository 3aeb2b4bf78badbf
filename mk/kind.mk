# A local Kubernetes cluster with kind (infra/kind/cluster.yaml) for the kind e2e driver.
# kind needs privileged containers: it runs in GitHub Actions (.github/workflows/e2e-kind.yml)
# and on laptops, not on the CI machines of .ci/run. Commands: platform_devkit/deploy/plan.py,
# which also pins the kind release (KIND_VERSION) the node image of the cluster is built for.

KIND_CLUSTER ?= data-platform

.PHONY: kind-up
kind-up: setup ## Create the kind cluster with the pinned node image (kept if it exists)
	@$(DEPLOY) kind-up

.PHONY: kind-load
kind-load: setup ## Load the locations' images (REGISTRY/<name>:TAG) into the kind node (LOCATION= for one)
	@$(DEPLOY) kind-load --location '$(LOCATION)'

.PHONY: kind-deploy
kind-deploy: setup tools ## Cluster, image loads, namespace, Secrets, then every release with the kind overlays
	@$(DEPLOY) kind

.PHONY: kind-down
kind-down: ## Delete the kind cluster
	@kind delete cluster --name $(KIND_CLUSTER)

.PHONY: kind-diagnostics
kind-diagnostics: ## Everything about a failed kind deployment into DIAGNOSTICS=<folder> (objects, events, logs, releases)
	@NAMESPACE=$(NAMESPACE) KIND_CLUSTER=$(KIND_CLUSTER) KUBE_CONTEXT=kind-$(KIND_CLUSTER) \
		DIAGNOSTICS_IF_MISSING=$(DIAGNOSTICS_IF_MISSING) \
		infra/kind/diagnostics.sh "$(or $(DIAGNOSTICS),.local/diagnostics)"
