# syntax=docker/dockerfile:1
# One image for every Trainport process: the API (default), `python -m api.admin migrate`,
# the Celery worker and beat, and the outbox relay (`python -m workers.relay`).
# Build: docker build -t trainport:local .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed numeric uid, so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --system --gid 10001 trainport \
 && useradd --system --uid 10001 --gid trainport --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin trainport

# bubblewrap: the local executor runs each rank of a run in a sandbox (docs/security-sandbox.md).
RUN apt-get update && apt-get install -y --no-install-recommends bubblewrap \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY api ./api
COPY core ./core
COPY workers ./workers
COPY dashboard/__init__.py ./dashboard/
COPY dashboard/static ./dashboard/static
COPY migrations ./migrations
# Editable, so the code runs from /app where migrations/ sits beside core/ (core.migrate finds
# it relative to itself). The files stay owned by root: the service user cannot change them.
RUN pip install --no-cache-dir -e '.[tensorboard]'
# The one writable place the service user owns: run state and logs (TRAINPORT_STATE_DIR).
RUN mkdir -p /var/lib/trainport && chown 10001:10001 /var/lib/trainport
ENV TRAINPORT_STATE_DIR=/var/lib/trainport

USER 10001:10001
EXPOSE 8000
# No HEALTHCHECK here: the worker, beat and relay use this image too and serve no HTTP. The API's
# checks live where it is deployed (docker-compose.yml, k8s/api.yaml).
CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000"]
