# syntax=docker/dockerfile:1
# One image for every webook process; the command picks which one runs:
#   python -m gateway                    the HTTP gateway (the default command)
#   python -m services.<name>            a gRPC service: user sms article interactive comment follow search
#   python -m services.<name> migrate    apply that service's schema migrations and exit
# Build from the repository root: docker build -t webook-py:0.1.0 .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /app
# The runtime lock first, so that a source-only change reuses the dependency layer.
# requirements-runtime.lock holds the project's runtime dependencies only (no test, lint or
# local-stack packages), each pinned as requirements.lock pins it and with the sha256 of its
# files: pip refuses anything else (--require-hashes) and resolves nothing (--no-deps).
COPY requirements-runtime.lock ./
RUN /opt/venv/bin/pip install --require-hashes --no-deps -r requirements-runtime.lock
COPY pyproject.toml README.md ./
COPY gen/ gen/
COPY kit/ kit/
COPY clients/ clients/
COPY gateway/ gateway/
COPY services/ services/
# The project itself, without dependencies (all installed above). It is installed in editable
# mode, as `make venv` does: migrations and other package files are used in place from /app,
# where the runtime stage keeps the same tree.
RUN /opt/venv/bin/pip install --no-deps -e . \
    && /opt/venv/bin/pip check \
    && /opt/venv/bin/python -m compileall -q /app/gen /app/kit /app/gateway /app/services

FROM ${PYTHON_IMAGE} AS runtime
# The root filesystem is mounted read-only in Kubernetes: no byte-code written at run time
# (it was compiled at build time), and a writable /tmp comes from an emptyDir volume.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 webook \
    && useradd --system --uid 10001 --gid webook --no-create-home --home-dir /app \
       --shell /usr/sbin/nologin webook
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
# A numeric user, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
# The gateway's HTTP port, the gRPC port and the metrics port the manifests use.
EXPOSE 8080 50051 9100
CMD ["python", "-m", "gateway"]
