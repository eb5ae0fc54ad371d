# One image for every Belfry service; the command picks the service:
#   docker run belfry python -m services.ingest     (8080; writer 8081, alerting 8082, api 8083)
#   docker run belfry python -m shared.db migrate   (the migration one-shot)
# Built by infra/compose.yaml (`make up`) and referenced by k8s/ as belfry:<version>.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependency layer: only pyproject.toml is copied first, so editing code reuses this layer.
# The pinned runtime dependencies are read from it (no dev extras); every one of them has
# a manylinux wheel for 3.11, so the slim image needs no compiler.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install --no-compile -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# A fixed non-root uid/gid (10001), which Kubernetes' runAsNonRoot can verify. The spool
# directory is the one place a service writes (a volume in compose and Kubernetes).
RUN groupadd --system --gid 10001 belfry \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin belfry \
    && mkdir -p /var/lib/belfry/spool \
    && chown -R 10001:10001 /var/lib/belfry

COPY shared ./shared
COPY services ./services
# The default alert rule pack and the channel file example the alerting service can load.
COPY infra/alerting ./infra/alerting

ENV PYTHONPATH=/app \
    INGEST_SPOOL_DIR=/var/lib/belfry/spool

USER 10001:10001
EXPOSE 8080 8081 8082 8083
# The services drain on SIGTERM (readyz 503, grace, close, flush): see shared/serve.py.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "services.ingest"]
