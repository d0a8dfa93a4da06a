# syntax=docker/dockerfile:1
#
# The operator's container image: `make image` (docker build -t linepool-operator:dev .).
#
# Two stages on the same pinned Python base (never `latest`: a rebuild must not change Python
# under us; bump the tag on purpose, together with requires-python in pyproject.toml):
#   builder  builds the wheel of this checkout and installs it, with its runtime dependencies
#            only (not the `sandbox` or `dev` extras), into a virtualenv at /opt/venv;
#   runtime  copies that virtualenv onto a clean base: no compiler, no pip, no build files,
#            and runs as an unprivileged numeric user (65532, "nonroot" by convention), so
#            `runAsNonRoot: true` can verify it without an /etc/passwd entry.
#
# The entrypoint is the `linepool` command and the default argument is `run`; the Helm chart
# passes its own arguments (`run --metrics-port ... --liveness ...`), which replace CMD only.

FROM python:3.11.10-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv

WORKDIR /src
# Only what the wheel is built from (see .dockerignore): pyproject.toml names README.md as the
# long description, and the package lives under operator/.
COPY pyproject.toml README.md ./
COPY operator/ operator/

# Every runtime dependency ships manylinux wheels for CPython 3.11, so no compiler is needed
# here either. pip and setuptools are removed from the virtualenv: nothing uses them at run time.
RUN /opt/venv/bin/pip wheel --no-deps --wheel-dir /tmp/wheels . \
 && /opt/venv/bin/pip install /tmp/wheels/linepool_operator-*.whl \
 && /opt/venv/bin/pip uninstall --yes pip setuptools \
 && /opt/venv/bin/linepool version


FROM python:3.11.10-slim-bookworm AS runtime

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="linepool-operator" \
      org.opencontainers.image.description="Kubernetes operator that keeps pools of iMessage lines healthy and within their quotas." \
      org.opencontainers.image.source="https://github.com/linepool/linepool-operator" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.10-slim-bookworm"

ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# The virtualenv's interpreter links to /usr/local/bin/python3.11 of the base, identical in
# both stages. Files stay owned by root: the operator's user can read them, not change them.
COPY --from=builder /opt/venv /opt/venv

USER 65532:65532

# The Helm chart's defaults: 8080 for the operator's Prometheus metrics (--metrics-port 8080),
# 8081 for kopf's health endpoint (--liveness http://0.0.0.0:8081/healthz).
EXPOSE 8080 8081

ENTRYPOINT ["linepool"]
CMD ["run"]
