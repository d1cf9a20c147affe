# Vigil: one image for the watcher, the GPU workers, the CPU (alert delivery) worker and `vigil db upgrade`.
#
# PyPI's Linux torch wheels are CUDA builds that bring their own CUDA and cuDNN libraries (nvidia-* wheels),
# so a slim Python base is enough: the host provides only the NVIDIA driver (nvidia-container-toolkit).
# To start from an image with torch already installed, pass e.g.
#   --build-arg BASE=pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime
ARG BASE=python:3.12-slim-bookworm
FROM ${BASE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/models \
    VIGIL_STORAGE__DATA_DIR=/data

# libglib2.0-0: OpenCV's headless wheel still links it; tini: signals reach Celery and the watcher.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libglib2.0-0 tini \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# Dependencies first, so a code change does not reinstall torch.
COPY pyproject.toml README.md ./
RUN mkdir -p vigil watcher workers \
    && touch vigil/__init__.py watcher/__init__.py workers/__init__.py \
    && pip install . \
    && pip uninstall -y vigil

# Editable install: migrations/ stays next to the packages, where vigil/store/migrate.py looks for it.
COPY vigil ./vigil
COPY watcher ./watcher
COPY workers ./workers
COPY migrations ./migrations
RUN pip install --no-deps -e . \
    && useradd --create-home --uid 1000 vigil \
    && mkdir -p /data /models /media \
    && chown vigil:vigil /data /models

USER vigil
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["vigil", "--help"]
