# syntax=docker/dockerfile:1
#
# taobao-connector: production image. Build from the repository root:
#
#   docker build -t registry.example.com/taobao-connector:0.1.0 .
#
# Two stages: the builder makes a wheel of the project and installs it, with its runtime
# dependencies only (no `embedded` extra: no test broker, no Valkey binary), into a virtual
# environment; the final image holds that environment and nothing else from the build.
# Pin the base image by digest for reproducible builds:
#   --build-arg PYTHON_IMAGE=python:3.11-slim@sha256:<digest>

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
RUN python -m venv /opt/venv

# Project metadata first, then the package: only these go into the wheel.
COPY pyproject.toml README.md ./
COPY connector ./connector

# Build the wheel, then install it without extras. All dependencies ship manylinux wheels
# for CPython 3.11, so no compiler is needed.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/pip install /wheels/taobao_connector-*.whl \
    && /opt/venv/bin/pip uninstall --yes pip \
    && /opt/venv/bin/taobao-connector --version


FROM ${PYTHON_IMAGE}

ARG VERSION=0.1.0
ARG REVISION=unknown

LABEL org.opencontainers.image.title="taobao-connector" \
      org.opencontainers.image.description="Kafka-native connector that keeps Taobao/Tmall stock in sync with a merchant's real inventory" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/example/taobao-connector" \
      org.opencontainers.image.base.name="python:3.11-slim"

# A fixed, non-root user: uid/gid 10001, no home, no shell (the chart runs it as 10001).
RUN groupadd --system --gid 10001 connector \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin connector

COPY --from=builder /opt/venv /opt/venv

# The connector writes nothing to disk: bytecode was compiled at install time, logs are
# JSON lines on stdout, unbuffered.
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

USER 10001:10001
WORKDIR /tmp

# /healthz, /readyz, /metrics (CONNECTOR_HTTP_PORT). No HEALTHCHECK: Kubernetes probes
# those endpoints itself.
EXPOSE 8080

ENTRYPOINT ["taobao-connector"]
CMD ["run"]
