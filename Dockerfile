# syntax=docker/dockerfile:1
# Two stages: the first turns the checkout into wheels (syndicate's own and every
# dependency's), the second installs only those wheels. The running image thus holds
# what `pip install syndicate-*.whl` gives a user, with no source tree, no compiler and
# no editable install.

FROM python:3.11-slim-bookworm AS build
# A compiler for dependencies that publish no wheel for the build platform (arm64 hosts).
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what the wheel is built from, and the versions CI tested (constraints.txt): every
# dependency's wheel is the tested version, so the final stage installs exactly those.
COPY pyproject.toml README.md constraints.txt ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels -c constraints.txt .

FROM python:3.11-slim-bookworm
# A fixed numeric uid, so orchestrators that insist on a non-root user can check it.
RUN groupadd --system --gid 10001 syndicate \
    && useradd --system --uid 10001 --gid syndicate --home-dir /data --shell /usr/sbin/nologin syndicate \
    && mkdir -p /data/feeds /data/mail \
    && chown -R 10001:10001 /data
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels syndicate
# The JSON Schemas and templates are package data inside the wheel: nothing else is copied.
ENV SYNDICATE_DATA_DIR=/data \
    SYNDICATE_API_HOST=0.0.0.0 \
    SYNDICATE_API_PORT=8000 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /data
VOLUME /data
EXPOSE 8000
# Python's own urllib, so the image needs no curl: a refused connection or a non-2xx answer
# raises, and the check fails. Containers that run a worker or beat turn it off in compose.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('SYNDICATE_API_PORT', '8000') + '/healthz', timeout=4)"]
CMD ["syndicate", "api"]
