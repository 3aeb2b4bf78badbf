# Every code location's image: the location as a Dagster gRPC code server (docs/images.md).
# One template for all locations, built by infra/docker/build-image.sh (`make image
# LOCATION=<name>`), which reads the build arguments from locations/<name>/pyproject.toml:
#   LOCATION            the folder under locations/
#   PACKAGE             [project].name, the workspace member `uv sync --package` installs
#   MODULE              [tool.dg.project].root_module: CMD serves <MODULE>.definitions
#   DESCRIPTION         [project].description, the image's description label
#   PREPARE_DEFS_STATE  [tool.platform.image].prepare_defs_state (true/false, default false):
#                       prepare the defs state of the location's state-backed components
#                       (dagster-dbt's manifest, ...) at build time with `dg utils refresh-defs-state`
#   EXTRAS              optional extras of the location to install too, space separated, from
#                       EXTRAS of build-image.sh / `make image EXTRAS=...` (default none): e.g.
#                       `aws` for production's S3 compute logs (docs/images.md, "Extras")
# A location that needs more (system packages, say) replaces this template with its own
# locations/<name>/Dockerfile: build-image.sh uses that file when it exists, with the same
# build arguments, and this one otherwise. Start from a copy of this file.
#
# Docker expands no variables in an exec-form CMD: build-image.sh writes the module into its
# @MODULE@ before the build (in a location's own Dockerfile too).
# Build context: the repository root, for the workspace lock.
# Works with the legacy builder (Debian's docker.io has no buildx): no BuildKit-only syntax.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS builder
# bash with pipefail: a pipe in a RUN below fails when any of its commands does.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG UV_VERSION=0.13.9
# The base image's Python (/usr/local/bin in the official image, /usr/bin in Debian's), never
# a downloaded one; the venv path is the final stage's too (scripts carry absolute shebangs).
ENV UV_PYTHON=python3.11 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON_PREFERENCE=only-system \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# Extra CA certificates for TLS-intercepting networks, staged by infra/docker/build-image.sh
# from EXTRA_CA_BUNDLE (empty by default, never committed). Trusted by this stage only.
COPY infra/docker/ca/ /tmp/extra-ca/
RUN cat /etc/ssl/certs/ca-certificates.crt > /tmp/ca-bundle.pem \
    && find /tmp/extra-ca -name '*.crt' -exec cat {} + >> /tmp/ca-bundle.pem
ENV SSL_CERT_FILE=/tmp/ca-bundle.pem \
    PIP_CERT=/tmp/ca-bundle.pem \
    UV_NATIVE_TLS=1
RUN python3.11 -m venv /opt/uv \
    && /opt/uv/bin/pip install --quiet "uv==${UV_VERSION}"

WORKDIR /app
# Dependencies layer: only the lock and the pyproject files, so it is rebuilt when they
# change, not when code does. With --frozen, uv needs the workspace root and this member only.
# The location itself is installed here too, editable (a .pth pointing at its src/, created
# as a stub), so the code layer below is a plain copy that runs no installer.
# Bytecode is compiled at build time because the read-only root filesystem lets no process
# cache it at run time (COMPILE_BYTECODE=0 trades start-up time for size, docs/images.md).
# Shared objects are left as the wheels ship them: stripping breaks libraries that auditwheel
# patched (numpy's OpenBLAS no longer loads).
# The platform's library every location depends on (libs/platform-ops, a workspace member) is
# installed the same way as the location: its pyproject here, a stub package, editable; its code
# is copied with the location's below.
# The extras named in EXTRAS (space separated) come from the lock like the rest, one
# `--extra=<name>` each.
# Everything above is the same for every location (one cached copy of those layers); the
# location's build arguments are declared from here on.
ARG COMPILE_BYTECODE=1
COPY pyproject.toml uv.lock ./
COPY libs/platform-ops/pyproject.toml libs/platform-ops/
ARG LOCATION
ARG PACKAGE
ARG MODULE
ARG EXTRAS=""
RUN test -n "${LOCATION}" && test -n "${PACKAGE}" && test -n "${MODULE}" \
    || { echo "LOCATION, PACKAGE and MODULE are unset: build with infra/docker/build-image.sh" >&2; exit 1; }
COPY locations/${LOCATION}/pyproject.toml locations/${LOCATION}/
RUN mkdir -p "locations/${LOCATION}/src/${MODULE}" libs/platform-ops/src/platform_ops \
    && touch "locations/${LOCATION}/src/${MODULE}/__init__.py" \
        libs/platform-ops/src/platform_ops/__init__.py \
    && set -- \
    && for extra in ${EXTRAS}; do set -- "$@" "--extra=${extra}"; done \
    && UV_COMPILE_BYTECODE=${COMPILE_BYTECODE} /opt/uv/bin/uv sync --frozen --no-dev \
        --package "${PACKAGE}" "$@"

# dg prepares the defs state below. It is a workspace dev tool, not a dependency of the
# location, so it lives in a cached throwaway environment layered on the venv (--no-sync: the
# venv stays exactly as synced above), pinned to the lock's versions. Fetched here, with the
# dependencies, so a code-only rebuild needs no network. Nothing for other locations.
ARG PREPARE_DEFS_STATE=false
ENV UV_CACHE_DIR=/opt/uv-cache
RUN if [ "${PREPARE_DEFS_STATE}" = true ]; then \
        /opt/uv/bin/uv export --frozen --all-packages --no-hashes --no-emit-workspace \
            --no-header --output-file /opt/lock-constraints.txt --quiet \
        && UV_NO_CACHE=0 UV_CONSTRAINT=/opt/lock-constraints.txt \
            /opt/uv/bin/uv run --frozen --no-sync --package "${PACKAGE}" --with dagster-dg-cli \
            dg --version; \
    fi

# Code layer: the platform library's source, then the location's files (.dockerignore keeps
# tests, secrets and host state out).
COPY libs/platform-ops/src/ libs/platform-ops/src/
COPY locations/${LOCATION}/ locations/${LOCATION}/
RUN python3.11 -m compileall -q libs/platform-ops/src "locations/${LOCATION}/src"

# The defs state of the location's state-backed components (.local_defs_state under
# src/<module>/defs/, e.g. the dbt manifest), so the code server loads it and never prepares
# it at start-up (on a read-only root it could not even write it). DBT_TARGET=parse is the
# platform's credential-free dbt target: nothing connects. The step must leave state behind,
# and it adds nothing else to the code layer: whatever the preparation wrote outside the
# state folders (a dbt project's target/ and logs/, say) is removed.
WORKDIR /app/locations/${LOCATION}
RUN if [ "${PREPARE_DEFS_STATE}" = true ]; then \
        find . -name .local_defs_state -prune -o -print0 | sort -z > /tmp/files-before \
        && UV_NO_CACHE=0 UV_OFFLINE=1 UV_CONSTRAINT=/opt/lock-constraints.txt \
            DBT_TARGET=parse DAGSTER_DISABLE_TELEMETRY=1 \
            /opt/uv/bin/uv run --frozen --no-sync --package "${PACKAGE}" --with dagster-dg-cli \
            dg utils refresh-defs-state \
        && { test -n "$(find "src/${MODULE}/defs/.local_defs_state" -mindepth 1 -maxdepth 1 \
                -not -name .gitignore -print -quit)" \
            || { echo "prepare_defs_state is true, but dg prepared no defs state in" \
                    "src/${MODULE}/defs/.local_defs_state" >&2; exit 1; }; } \
        && find . -name .local_defs_state -prune -o -print0 | sort -z \
            | comm -z -13 /tmp/files-before - | xargs -0 -r rm -rf \
        && rm /tmp/files-before; \
    fi


FROM ${BASE_IMAGE}
RUN groupadd --system --gid 10001 dagster \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
        --shell /usr/sbin/nologin dagster
# Root-owned and read-only for the server: the root filesystem can be mounted read-only, and
# everything written at run time goes to /tmp (an emptyDir or tmpfs there).
COPY --from=builder /app/.venv /app/.venv
COPY --from=builder /app/libs /app/libs
ARG LOCATION
COPY --from=builder /app/locations/${LOCATION} /app/locations/${LOCATION}
# The same for every image. Where the tools the locations use write (matplotlib's config and
# font cache, dbt's target and logs), all under /tmp; the platform's dbt profile target for
# deployments (`prod`; the devkit uses `dev`, builds `parse`) unless the deployment sets one;
# no dbt usage statistics. Harmless in an image without dbt or matplotlib.
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    DBT_TARGET=prod \
    DBT_TARGET_PATH=/tmp/dbt/target \
    DBT_LOG_PATH=/tmp/dbt/logs \
    DBT_SEND_ANONYMOUS_USAGE_STATS=false
WORKDIR /app/locations/${LOCATION}
USER 10001:10001
EXPOSE 3030
# Exactly what the user-deployments chart runs with the location's values
# (dagsterApiGrpcArgs: ["-m", "<module>.definitions"]); build-image.sh fills in @MODULE@.
CMD ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", "3030", "-m", "@MODULE@.definitions"]

ARG MODULE
ARG DESCRIPTION
ARG EXTRAS=""
ARG VCS_REF=unknown
LABEL org.opencontainers.image.title="${LOCATION}" \
      org.opencontainers.image.description="${DESCRIPTION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.vendor="data platform team" \
      io.dagster.code-location="${LOCATION}" \
      io.dagster.module="${MODULE}.definitions" \
      io.dagster.extras="${EXTRAS}"
