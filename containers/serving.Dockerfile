# syntax=docker/dockerfile:1
# The one serving image for SageMaker, Azure ML and Kubernetes (docs/serving.md, "Image").
#
# BASE switches the base image: the official Python image pinned by digest in CI (the
# default), or the root filesystem scripts/containers.sh makes from the Debian mirror on
# machines that reach no container registry. Both are Debian bookworm with Python 3.11.
# The digest below is the one a public project recorded as verified; no registry is reachable
# from the dev machines, so the release workflow checks it resolves before building.
ARG BASE=docker.io/library/python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

FROM ${BASE} AS build
# PIP_CERT names a CA bundle mounted at build time (never copied into a layer) for a mirror
# or proxy that re-signs TLS; empty uses the base's own bundle.
ARG PIP_CERT=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_CERT=${PIP_CERT}
COPY containers/serving-requirements.txt /tmp/requirements.txt
# Wheels only: the final stage has no compiler, and nothing here should need one.
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --only-binary=:all: --no-deps -r /tmp/requirements.txt \
 && /opt/venv/bin/pip check
# The whole runtime package (pure Python, under 1 MB): serving imports reach outside
# shipway/serving (e.g. shipway.explain), and a partial copy breaks on the next such import.
COPY shipway_core /opt/app/shipway_core
COPY shipway /opt/app/shipway
# Byte-compile at build time: the user cannot write the venv at run time, and cold start counts.
RUN /opt/venv/bin/python -m compileall -q /opt/app \
 && /opt/venv/bin/pip uninstall -y -q pip

FROM ${BASE}
# A fixed numeric non-root user: Kubernetes' runAsNonRoot can verify a number, not a name.
RUN echo "shipway:x:10001:10001:shipway serving:/nonexistent:/usr/sbin/nologin" >> /etc/passwd \
 && echo "shipway:x:10001:" >> /etc/group
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/app /opt/app
ENV PATH=/opt/venv/bin:$PATH PYTHONPATH=/opt/app PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    HOME=/tmp TMPDIR=/tmp MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
# Local runs only (docker/podman); SageMaker, Azure ML and Kubernetes probe the routes themselves.
HEALTHCHECK --interval=10s --timeout=2s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/ping', timeout=2).status != 200)"]
# SageMaker starts the container as `docker run IMAGE serve`; the argument is accepted and ignored.
ENTRYPOINT ["python", "-m", "shipway.serving.platform"]
CMD ["serve"]
LABEL org.opencontainers.image.title="shipway-serving" \
      org.opencontainers.image.source="https://github.com/shipway/shipway"
