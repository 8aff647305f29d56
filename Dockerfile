# WeRSS Cascade: one image for the parent and the child.
#   docker build -t werss-cascade .
# Parent (default): `werss-parent db upgrade`, then `werss-parent serve` on port 8001.
#   docker run -e WERSS_SECRET_KEY=... -e WERSS_ADMIN_PASSWORD=... -p 8001:8001 \
#              -v werss-data:/app/data werss-cascade
# Extra arguments are passed to `werss-parent serve`, e.g. `... werss-cascade --workers 4`.
# A command starting with werss-child or werss-parent runs as it is instead, e.g. the child:
#   docker run --env-file child.env -v werss-child-data:/app/data werss-cascade werss-child run
FROM python:3.11-slim

# tzdata: the child shows times in message templates in the zone named by TZ.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tzdata \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Pinned dependencies first, so code changes do not reinstall them.
WORKDIR /src
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock

COPY pyproject.toml ./
COPY shared ./shared
COPY parent ./parent
COPY child ./child
RUN pip install --no-deps . && rm -rf /src
COPY deploy/docker-entrypoint.sh /usr/local/bin/werss-entrypoint

RUN useradd --system --create-home --home-dir /home/werss --shell /usr/sbin/nologin werss \
    && mkdir -p /app/data \
    && chown -R werss:werss /app
USER werss
WORKDIR /app

# The default database, sqlite:///data/parent.db, resolves to /app/data/parent.db here, and
# the child's default cache, data/child, to /app/data/child. Set WERSS_DATABASE_URL (or
# DATABASE_URL) to use PostgreSQL instead.
VOLUME ["/app/data"]
EXPOSE 8001

# The parent's health check. A child container overrides it (see docker-compose.yml).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8001/readyz', timeout=4).status == 200 else 1)"]

# Parent: WERSS_SECRET_KEY (or WERSS_SECRET_KEY_FILE) is required; without it both commands
# stop with "no secret key". WERSS_ADMIN_PASSWORD sets the first admin's password; without it
# a random one is printed once in the log.
# Child: the CASCADE_* variables of deploy/child.env.example.
# WERSS_DB_WAIT (60): seconds `db upgrade` is retried while the database is not reachable.
ENTRYPOINT ["/usr/local/bin/werss-entrypoint"]
CMD []
