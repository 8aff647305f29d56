# WeRSS Cascade parent: `werss-parent db upgrade`, then `werss-parent serve` on port 8001.
#   docker build -t werss-cascade-parent .
#   docker run -e WERSS_SECRET_KEY=... -e WERSS_ADMIN_PASSWORD=... -p 8001:8001 \
#              -v werss-data:/app/data werss-cascade-parent
# Extra arguments are passed to `werss-parent serve`, e.g. `... werss-cascade-parent --workers 4`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Pinned dependencies first, so code changes do not reinstall them.
WORKDIR /src
COPY requirements.lock ./
RUN pip install -r requirements.lock

COPY pyproject.toml ./
COPY shared ./shared
COPY parent ./parent
COPY child ./child
RUN pip install --no-deps . && rm -rf /src

RUN useradd --system --create-home --home-dir /home/werss --shell /usr/sbin/nologin werss \
    && mkdir -p /app/data \
    && chown -R werss:werss /app
USER werss
WORKDIR /app

# The default database, sqlite:///data/parent.db, resolves to /app/data/parent.db here.
# Set WERSS_DATABASE_URL (or DATABASE_URL) to use PostgreSQL instead.
VOLUME ["/app/data"]
EXPOSE 8001

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8001/healthz', timeout=4).status == 200 else 1)"]

# WERSS_SECRET_KEY (or WERSS_SECRET_KEY_FILE) is required; without it both commands stop
# with "no secret key". WERSS_ADMIN_PASSWORD sets the first admin's password; without it a
# random one is printed once in the log.
ENTRYPOINT ["/bin/sh", "-c", "werss-parent db upgrade && exec werss-parent serve --bind 0.0.0.0:8001 \"$@\"", "werss-parent"]
CMD []
