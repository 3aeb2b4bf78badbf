# A local Kubernetes cluster with kind (infra/kind/cluster.yaml) for the kind e2e driver.
# kind needs privileged containers: it runs in GitHub Actions (.github/workflows/e2e-kind.yml)
# and on laptops, not on the CI machines of .ci/run.

KIND_CLUSTER ?= data-platform
KIND_CONTEXT := kind-$(KIND_CLUSTER)

.PHONY: kind-up
kind-up: ## Create the kind cluster (kept if it exists)
	@if [[ " $$(kind get clusters 2>/dev/null | tr '\n' ' ') " == *" $(KIND_CLUSTER) "* ]]; then \
		echo "==> kind cluster $(KIND_CLUSTER) exists"; \
	else \
		echo "==> kind create cluster $(KIND_CLUSTER)"; \
		kind create cluster --name $(KIND_CLUSTER) --config infra/kind/cluster.yaml --wait 180s; \
	fi

.PHONY: kind-load
kind-load: ## Load every location's image (REGISTRY/<name>:TAG) into the kind node
	@for location in $(DEPLOY_LOCATIONS); do \
		echo "==> kind load docker-image $(REGISTRY)/$$location:$(TAG)"; \
		kind load docker-image --name $(KIND_CLUSTER) $(REGISTRY)/$$location:$(TAG); \
	done

.PHONY: kind-deploy
kind-deploy: kind-up kind-load ## kind-up, load the images, create Secrets, deploy everything with the kind overlays
	@$(MAKE) --no-print-directory secrets deploy KUBE_CONTEXT=$(KIND_CONTEXT) OVERLAY=kind TAG=$(TAG)

.PHONY: kind-down
kind-down: ## Delete the kind cluster
	@kind delete cluster --name $(KIND_CLUSTER)

.PHONY: kind-load-one
kind-load-one: ## Load one location's image: make kind-load-one LOCATION=x TAG=y
	@kind load docker-image --name $(KIND_CLUSTER) $(REGISTRY)/$(LOCATION):$(TAG)
