# syntax=docker/dockerfile:1
# The MLflow tracking server image for the Kubernetes target (docs/serving.md, "Image"): the
# upstream image has no PostgreSQL driver, and the Kubernetes TrackingServer's backend store is
# PostgreSQL. Same BASE switch as containers/serving.Dockerfile.
# The digest is one a public project recorded as verified; the release workflow checks it resolves.
ARG BASE=docker.io/library/python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

FROM ${BASE} AS build
ARG PIP_CERT=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_CERT=${PIP_CERT}
COPY containers/mlflow-requirements.txt /tmp/requirements.txt
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --only-binary=:all: --no-deps -r /tmp/requirements.txt \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/pip uninstall -y -q pip

FROM ${BASE}
RUN echo "mlflow:x:10001:10001:mlflow server:/nonexistent:/usr/sbin/nologin" >> /etc/passwd \
 && echo "mlflow:x:10001:" >> /etc/group
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 HOME=/tmp \
    MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
USER 10001:10001
WORKDIR /tmp
EXPOSE 5000
HEALTHCHECK --interval=10s --timeout=2s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=2).status != 200)"]
# The Kubernetes component passes the whole `mlflow server ...` command (it reads the database
# password from a mounted file), so the image only provides the environment.
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000"]
LABEL org.opencontainers.image.title="shipway-mlflow"
