# loopserve: Open Inference Protocol (KServe V2) gRPC server on ONNX Runtime.
#
#   docker build -t loopserve .
#
# torch is the CPU build by default (scripts/install-torch.sh: PyTorch's CPU wheel index when the
# configured indexes have no +cpu build). For an image with the CUDA build of torch:
#   docker build --build-arg TORCH_SPEC="torch==2.13.0" -t loopserve:cuda .

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: a self-contained virtual environment in /opt/venv --------------------------------
FROM ${PYTHON_IMAGE} AS build
ARG TORCH_VERSION=2.13.0
# Empty: the CPU build of TORCH_VERSION. Set: installed as given.
ARG TORCH_SPEC=""
ARG TORCH_CPU_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, in its own layer: it is by far the largest dependency and changes least often.
COPY scripts/install-torch.sh scripts/requirements-no-deps.txt /src/scripts/
RUN pip install --upgrade pip \
 && TORCH_VERSION="${TORCH_VERSION}" TORCH_SPEC="${TORCH_SPEC}" \
    TORCH_CPU_INDEX_URL="${TORCH_CPU_INDEX_URL}" /src/scripts/install-torch.sh pip \
 && pip install --no-deps -r /src/scripts/requirements-no-deps.txt
WORKDIR /src
COPY pyproject.toml README.md ./
COPY protos/ protos/
COPY service/ service/
# --no-warn-conflicts: alibi-detect's declared dependencies are left out on purpose.
RUN pip install --no-warn-conflicts . && loopserve --help >/dev/null

# ---- runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 loopserve \
 && useradd --system --uid 10001 --gid loopserve --create-home --home-dir /home/loopserve loopserve \
 && mkdir -p /var/lib/loopserve /var/lib/loopserve-work \
 && chown loopserve:loopserve /var/lib/loopserve /var/lib/loopserve-work
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY pyproject.toml README.md ./
COPY protos/ protos/
COPY service/ service/
COPY models/ models/
COPY --chmod=0755 deploy/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MODEL=support-intents \
    LOOPSERVE_STATE_DIR=/var/lib/loopserve \
    LOOPSERVE_MODELS_DIR=/app/models \
    LOOPSERVE_HOST=0.0.0.0 \
    LOOPSERVE_GRPC_PORT=8001 \
    LOOPSERVE_HEALTH_PORT=8002 \
    LOOPSERVE_METRICS_HOST=0.0.0.0 \
    LOOPSERVE_METRICS_PORT=9090

# The container binds 0.0.0.0, so `serve` refuses to start without tokens: mount a tokens file
# (LOOPSERVE_TOKENS_FILE=/run/secrets/...) or pass LOOPSERVE_TOKENS (see README, Security). TLS:
# mount the certificate and key and set LOOPSERVE_TLS_CERT, LOOPSERVE_TLS_KEY (and
# LOOPSERVE_TLS_CLIENT_CA for mutual TLS). Port 8002 answers grpc.health.v1 alone, in plaintext,
# for probes (Docker's HEALTHCHECK, Kubernetes' gRPC probes) that cannot speak TLS.

# Model versions (built on first start, then replaced by fine-tuning) live here: keep it on a
# persistent volume, or every new container starts again from version 1. Scaled out, it is shared
# by every process, and each one gets its own work dir (LOOPSERVE_WORK_DIR, e.g.
# /var/lib/loopserve-work, which exists for that) for drift state and job directories.
VOLUME ["/var/lib/loopserve"]
EXPOSE 8001 8002 9090
USER loopserve

# gRPC health of the inference service on the plaintext health port (the gRPC port when it is
# unset); the start period covers building version 1 on first start.
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 CMD ["python", "-c", "import os,sys,grpc;from grpc_health.v1 import health_pb2 as h,health_pb2_grpc as g;p=os.environ.get('LOOPSERVE_HEALTH_PORT') or os.environ.get('LOOPSERVE_GRPC_PORT','8001');c=grpc.insecure_channel('127.0.0.1:'+p);r=g.HealthStub(c).Check(h.HealthCheckRequest(service='inference.GRPCInferenceService'),timeout=3);sys.exit(r.status!=h.HealthCheckResponse.SERVING)"]

# SIGTERM: health turns NOT_SERVING, in-flight requests drain (LOOPSERVE_DRAIN_SECONDS), exit 0.
# Allow a stop timeout above the drain time (docker stop -t / stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["docker-entrypoint.sh"]
