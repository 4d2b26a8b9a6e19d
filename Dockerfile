# syntax=docker/dockerfile:1
# One image for every process of the control plane. The default command is the web server; the other
# processes override it:
#   web      gunicorn controlplane.wsgi --bind 0.0.0.0:8000        (default)
#   worker   celery -A controlplane worker
#   beat     celery -A controlplane beat --schedule /tmp/celerybeat-schedule
#   gateway  python -m gateway                                      (listens on GATEWAY_BIND, 0.0.0.0:8080)
#   migrate  python manage.py migrate --no-input
# It runs as uid 10001 and writes only to /tmp, so it works with a read-only root filesystem.
# Pin the base by digest for reproducible builds: --build-arg PYTHON_IMAGE=python:3.11-slim@sha256:...
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements.txt constraints.txt /tmp/deps/
# Every runtime dependency ships a manylinux wheel for CPython 3.11, so no compiler is needed.
RUN /opt/venv/bin/pip install --only-binary=:all: -r /tmp/deps/requirements.txt -c /tmp/deps/constraints.txt

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    HF_HOME=/tmp/huggingface \
    DJANGO_DEBUG=false
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY . .
# Static files are collected at build time into /app/staticfiles, which the web process serves itself
# (whitenoise), so the web pods need no volume for them. The keys are placeholders: collectstatic needs
# settings, not secrets, and DJANGO_DEBUG=false refuses to start without them. The bytecode is compiled
# here because the running containers cannot write it.
RUN DJANGO_SECRET_KEY=build-only-placeholder SECRETS_ENCRYPTION_KEY=build-only-placeholder \
    python manage.py collectstatic --no-input \
 && python -m compileall -q /app
USER 10001:10001
EXPOSE 8000 8080
CMD ["gunicorn", "controlplane.wsgi", "--bind", "0.0.0.0:8000", "--access-logfile", "-", "--config", "python:controlplane.webserver"]
