# One image for every celery-membench Python service (workers, loadgen, flower) in docker-compose.yml.
# Patch-level pinned base: a rebuild months later measures the same interpreter and libc (malloc
# behaviour is part of what this benchmark compares).
FROM python:3.11.9-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The whole repo (minus .dockerignore): the loadgen reads /app/loadgen/schedule.example.toml.
COPY . /app

# Non-editable install: the services import membench.* from site-packages, not from /app.
# /targets is created here, owned by the service user, because an empty named volume mounted
# there is initialised from the image: that is what makes the shared targets volume writable.
RUN pip install '.[bench]' \
    && useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin membench \
    && mkdir -p /targets/workers /targets/loadgen \
    && chown -R membench:membench /targets

USER membench

CMD ["membench", "--help"]
