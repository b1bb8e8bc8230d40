# syntax=docker/dockerfile:1
#
# highlight: Kafka highlight moments in, Live_Tape_Start recordings out.
#
#   docker build -t highlight:local .
#   docker run --rm -e HIGHLIGHT_KAFKA_BOOTSTRAP_SERVERS=... -e HIGHLIGHT_LIVE_APPID=... \
#       -e HIGHLIGHT_LIVE_KEY=... highlight:local            # `highlight run`
#   docker run --rm -p 8080:8080 highlight:local simulate-live --host 0.0.0.0 --port 8080 \
#       --appid 1234 --key sim-secret-key                      # the Live API simulator
#
# The image carries the runtime dependencies only: `highlight demo` needs the `demo` extra and is meant to be
# run from a source checkout, not from this image.

############################################################################################################
# Stage 1: build the project's wheel and the wheels of all its dependencies.
FROM python:3.11.13-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src
# Only what the wheel is made of (see .dockerignore): pyproject's `readme` needs README.md, and the wheel
# force-includes schemas/ as highlight/schemas.
COPY pyproject.toml README.md ./
COPY schemas/ schemas/
COPY highlight/ highlight/

RUN pip wheel --wheel-dir /wheels .

############################################################################################################
# Stage 2: install those wheels, offline, into a clean interpreter; nothing of the build stays behind.
FROM python:3.11.13-slim-bookworm AS runtime

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# The wheels are bind-mounted from the build stage, so they never become a layer of this image.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels highlight \
    && highlight --help > /dev/null

# A fixed numeric uid/gid, so Kubernetes' `runAsNonRoot` can verify it without resolving names.
RUN groupadd --system --gid 10001 highlight \
    && useradd --system --uid 10001 --gid highlight --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin highlight
USER 10001:10001
WORKDIR /tmp

# /metrics, /healthz and /readyz (HIGHLIGHT_METRICS_PORT).
EXPOSE 9108
# `highlight callbacks` serves Live's notifications here (HIGHLIGHT_CALLBACK_PORT).
EXPOSE 8090

# Liveness only (/readyz is for orchestrators that gate on it). slim has no curl: use the interpreter.
# Follows HIGHLIGHT_METRICS_PORT when it is set; a port of 0 disables the endpoint and so this check.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('HIGHLIGHT_METRICS_PORT') or '9108'; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

# SIGTERM starts a graceful drain (in-flight calls finish, offsets commit); it completes within 30 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["highlight"]
CMD ["run"]
