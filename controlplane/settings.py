"""Settings for the control plane, read only from the environment.

Every value comes through the small readers below. Development defaults point at a local Postgres and
Redis; with ``DJANGO_DEBUG`` off, a missing production secret stops the process at start-up.
"""

import hashlib
import hmac
import ipaddress
import os
import re
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def env_bool(name: str, default: bool) -> bool:
    value = env_str(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = env_str(name)
    try:
        return default if value is None else int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from exc


def env_list(name: str, default: list[str]) -> list[str]:
    value = env_str(name)
    return default if value is None else [item.strip() for item in value.split(",") if item.strip()]


def database_from_url(url: str) -> dict:
    """``postgres://user:pass@host:port/name?host=/socket/dir`` -> a Django DATABASES entry."""
    parsed = urlparse(url)
    if parsed.scheme not in {"postgres", "postgresql", "postgresql+psycopg"}:
        raise ImproperlyConfigured(f"DATABASE_URL must be a postgres:// URL, got scheme {parsed.scheme!r}")
    query = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
    host = query.pop("host", None) or parsed.hostname or ""
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parsed.path.lstrip("/")) or "controlplane",
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": host,
        "PORT": str(parsed.port or ""),
        "CONN_MAX_AGE": env_int("DATABASE_CONN_MAX_AGE", 60),
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {"connect_timeout": env_int("DATABASE_CONNECT_TIMEOUT", 5), **query},
        "TEST": {"NAME": env_str("DATABASE_TEST_NAME")},
    }


# ---------------------------------------------------------------- core
DEBUG = env_bool("DJANGO_DEBUG", False)  # production-safe; make run and the suite turn it on
# Which process this is; each gets only the keys it reads (the Helm chart and docker-compose set it). Web,
# worker and management commands need both keys; the watcher the encryption key; the gateway only its record
# key (GATEWAY_RECORD_KEY, or DJANGO_SECRET_KEY to derive it from, below); beat and migrate neither. Unset
# means "web".
PROCESS = env_str("CONTROLPLANE_PROCESS", "web")
PROCESSES = ("web", "worker", "watcher", "gateway", "beat", "migrate")
if PROCESS not in PROCESSES:
    raise ImproperlyConfigured(f"CONTROLPLANE_PROCESS must be one of {', '.join(PROCESSES)}, got {PROCESS!r}")
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
SECRETS_ENCRYPTION_KEY = env_str("SECRETS_ENCRYPTION_KEY")
if not DEBUG and PROCESS in {"web", "worker"} and (not SECRET_KEY or not SECRETS_ENCRYPTION_KEY):
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY and SECRETS_ENCRYPTION_KEY must be set when DJANGO_DEBUG is off "
        "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
    )
if not DEBUG and PROCESS == "watcher" and not SECRETS_ENCRYPTION_KEY:  # it decrypts the clusters' kubeconfigs
    raise ImproperlyConfigured("the watcher needs SECRETS_ENCRYPTION_KEY (set it when DJANGO_DEBUG is off)")
if not DEBUG and PROCESS == "gateway" and not (env_str("GATEWAY_RECORD_KEY") or SECRET_KEY):
    raise ImproperlyConfigured("the gateway needs GATEWAY_RECORD_KEY (or DJANGO_SECRET_KEY to derive it from)")
# Development-only fallbacks: never used when DEBUG is off. A process given no key (beat, migrate, the
# gateway) keeps it empty, and Django refuses to use an empty SECRET_KEY, so nothing signs with a stand-in.
SECRET_KEY = SECRET_KEY or ("dev-insecure-secret-key-do-not-use-in-production" if DEBUG else "")
SECRETS_ENCRYPTION_KEY = SECRETS_ENCRYPTION_KEY or ("dev-insecure-encryption-key" if DEBUG else "")

# This installation's id, labelled on every endpoint object it creates so that it prunes only its own (two
# installations may share a cluster). Set it explicitly in production (the chart does); the fallback is
# derived from DJANGO_SECRET_KEY, so it changes with that key.
INSTALLATION_ID = env_str("INSTALLATION_ID") or hashlib.sha256(f"installation:{SECRET_KEY}".encode()).hexdigest()[:12]
if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?", INSTALLATION_ID):
    raise ImproperlyConfigured("INSTALLATION_ID must be a Kubernetes label value (1 to 63 letters, digits, '.', '_', '-')")

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["*"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])
# Behind a proxy that terminates TLS (the Helm chart's default): trust its X-Forwarded-Proto, send the
# session and CSRF cookies only over HTTPS, and tell browsers to use HTTPS only (HSTS, sent on HTTPS
# responses). Off for local http (make run, docker compose), where Secure cookies would never come back.
BEHIND_TLS_PROXY = env_bool("DJANGO_BEHIND_TLS_PROXY", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_TLS_PROXY else None
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = BEHIND_TLS_PROXY
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31_536_000) if BEHIND_TLS_PROXY else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", False)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "controlplane",
    "quotas",
    "endpoints",
    "deployments",
    "workers",
]

MIDDLEWARE = [
    "controlplane.middleware.RequestIdMiddleware",
    "controlplane.middleware.MalformedRequestMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "controlplane.middleware.ContentSecurityPolicyMiddleware",
    # Static files are answered here, before sessions, auth or the database are touched; below the security
    # and CSP middleware so that their headers (nosniff, the policy) are on static responses too.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "controlplane.middleware.DatabaseUnavailableMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "controlplane.urls"
WSGI_APPLICATION = "controlplane.wsgi.application"
APPEND_SLASH = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
# Static files (the admin's, the API docs') are served by the web process itself (whitenoise), from
# STATIC_ROOT as `collectstatic` left it: the image collects them at build time, `make run` at start. Names
# carry a hash of the content (cached for a year by browsers and proxies) and have gzip twins. With DEBUG on,
# whitenoise also serves straight from the apps' directories and the pages reference the unhashed names.
STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("DJANGO_STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
# Request bodies above this size are refused with 413 (an endpoint spec is a few KiB).
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("API_MAX_BODY_BYTES", 256 * 1024)

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# ---------------------------------------------------------------- data stores
DATABASE_URL = env_str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/controlplane")
DATABASES = {"default": database_from_url(DATABASE_URL)}
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
# The shared cache holds the API rate-limit counters, so limits hold across web processes. Short socket
# timeouts: with Redis down the API stays up, unthrottled (controlplane.throttling).
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env_str("CACHE_URL", REDIS_URL),
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }
}

# ---------------------------------------------------------------- celery
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "celery")
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Publishing from a web request must fail fast when Redis is down: Postgres is the truth and the
# beat sweep re-enqueues whatever a lost message missed. `max_retries: 0` makes kombu re-establish a
# dropped connection once instead of retrying for `broker_connection_timeout` (a 6 s stall per request
# with Redis stopped); `socket_timeout: 2` bounds a Redis that accepts but never answers (it stays above
# kombu's 1 s BRPOP timeout, so consumers are unaffected). apply_async(retry=False) alone does neither.
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 2, "socket_timeout": 2, "visibility_timeout": 3600,
                                   "max_retries": 0}
RECONCILE_SWEEP_SECONDS = env_int("RECONCILE_SWEEP_SECONDS", 15)
DRIFT_SWEEP_SECONDS = env_int("DRIFT_SWEEP_SECONDS", 300)
# How often beat probes each enabled cluster (version, node capacity, reachability) for the console.
CLUSTER_PROBE_SECONDS = env_int("CLUSTER_PROBE_SECONDS", 60)
# Watch-driven observation (manage.py watch_clusters, deployments.watch): watches last WATCH_TIMEOUT_SECONDS and
# resume, changes are coalesced for WATCH_COALESCE_MS, the cluster list is re-read every WATCH_CLUSTERS_SECONDS.
WATCH_TIMEOUT_SECONDS = env_int("WATCH_TIMEOUT_SECONDS", 300)
WATCH_COALESCE_MS = env_int("WATCH_COALESCE_MS", 50)
WATCH_CLUSTERS_SECONDS = env_int("WATCH_CLUSTERS_SECONDS", 30)
# While pods start or roll, the reconciler looks again after this many seconds even if no watch said so
# (the safety net under the watcher; the only way to see progress without one).
RECONCILE_REQUEUE_SECONDS = env_int("RECONCILE_REQUEUE_SECONDS", 2)
# The cost ledger accrues every COST_ACCRUE_SECONDS, up to COST_SETTLE_SECONDS ago (see endpoints.costs).
COST_ACCRUE_SECONDS = env_int("COST_ACCRUE_SECONDS", 60)
COST_SETTLE_SECONDS = env_int("COST_SETTLE_SECONDS", 30)
# The operator console lists an endpoint pending or initializing for longer than this as stuck.
CONSOLE_STUCK_SECONDS = env_int("CONSOLE_STUCK_SECONDS", 600)

# ---------------------------------------------------------------- product
HF_HUB_URL = env_str("HF_HUB_URL", "https://huggingface.co")
HF_HUB_TOKEN = env_str("HF_HUB_TOKEN")
DEFAULT_QUOTA_CPU = env_int("DEFAULT_QUOTA_CPU", 32)
DEFAULT_QUOTA_GPU = env_int("DEFAULT_QUOTA_GPU", 4)
DEFAULT_QUOTA_NEURON = env_int("DEFAULT_QUOTA_NEURON", 0)
TOKEN_LAST_USED_RESOLUTION_SECONDS = env_int("TOKEN_LAST_USED_RESOLUTION_SECONDS", 60)
MAX_ENDPOINTS_PER_ACCOUNT = env_int("MAX_ENDPOINTS_PER_ACCOUNT", 100)
MAX_TOKENS_PER_USER = env_int("MAX_TOKENS_PER_USER", 100)  # live (unrevoked, unexpired) API tokens
# The managed image per library for `model.image.huggingface`; the task catalog picks the library.
MANAGED_IMAGE = env_str(
    "MANAGED_IMAGE", "registry.hf.space/huggingface-inference-toolkit:latest"
)

# The image of the init container that downloads the repository at the pinned commit (has `hf`).
MODEL_FETCHER_IMAGE = env_str("MODEL_FETCHER_IMAGE", "ghcr.io/controlplane/controlplane:0.1.0")
DEPLOYMENT_PROGRESS_DEADLINE_SECONDS = env_int("DEPLOYMENT_PROGRESS_DEADLINE_SECONDS", 600)
RECONCILE_MAX_RETRIES = env_int("RECONCILE_MAX_RETRIES", 12)
RECONCILE_MAX_BACKOFF_SECONDS = env_int("RECONCILE_MAX_BACKOFF_SECONDS", 60)
# Scheduled scaling (compute.scaling.schedules): at most this many windows per endpoint, and how often beat
# looks for windows that open or close (their edges take effect within this many seconds).
SCALING_SCHEDULES_MAX = env_int("SCALING_SCHEDULES_MAX", 10)
SCALING_SCHEDULE_SECONDS = env_int("SCALING_SCHEDULE_SECONDS", 60)
if not 1 <= SCALING_SCHEDULES_MAX <= 100 or not 1 <= SCALING_SCHEDULE_SECONDS <= 3600:
    raise ImproperlyConfigured("SCALING_SCHEDULES_MAX must be between 1 and 100, SCALING_SCHEDULE_SECONDS between 1 "
                               "and 3600")

# ---------------------------------------------------------------- gateway (python -m gateway) and its feed
# The gateway process reads these too (it imports this module, never django.setup()).
GATEWAY_BIND = env_str("GATEWAY_BIND", "0.0.0.0:8080")
# Event-loop processes per gateway pod, all accepting on GATEWAY_BIND (SO_REUSEPORT; the kernel spreads the
# connections). One process uses at most one core: give a pod N cores and N workers. Each worker has its own
# memory (caches, feed subscription, hold queues, miss budgets) and its own traffic flusher; the metrics page
# sums every worker's (docs/gateway.md, "Several workers").
GATEWAY_WORKERS = env_int("GATEWAY_WORKERS", 1)
if not 1 <= GATEWAY_WORKERS <= 64:
    raise ImproperlyConfigured(f"GATEWAY_WORKERS must be between 1 and 64, got {GATEWAY_WORKERS}")
# Requests held per endpoint while it wakes; more get 429. The hold lasts at most GATEWAY_HOLD_TIMEOUT
# seconds (a request's X-Scale-Up-Timeout header may shorten it), then 503 with Retry-After.
GATEWAY_QUEUE_LIMIT = env_int("GATEWAY_QUEUE_LIMIT", 1000)
GATEWAY_HOLD_TIMEOUT = env_int("GATEWAY_HOLD_TIMEOUT", 120)
# While requests are held, the gateway probes the waking endpoint's health every
# GATEWAY_PROBE_INTERVAL_MS and re-sends the wake message every GATEWAY_WAKE_RESEND_SECONDS.
GATEWAY_PROBE_INTERVAL_MS = env_int("GATEWAY_PROBE_INTERVAL_MS", 1000)
GATEWAY_WAKE_RESEND_SECONDS = env_int("GATEWAY_WAKE_RESEND_SECONDS", 10)
# Redis keys of the route feed and activity; every web, worker and gateway process must agree.
GATEWAY_REDIS_PREFIX = env_str("GATEWAY_REDIS_PREFIX", "gateway:")
# How long a record stays in Redis; a record older than this is re-read from the database once, which
# bounds how long a change whose publication was lost (Redis down at the time) can go unseen. Hence at
# most a day: every record expires.
GATEWAY_RECORD_TTL_SECONDS = env_int("GATEWAY_RECORD_TTL_SECONDS", 600)
if not 1 <= GATEWAY_RECORD_TTL_SECONDS <= 86_400:
    raise ImproperlyConfigured(f"GATEWAY_RECORD_TTL_SECONDS must be between 1 and 86400, got {GATEWAY_RECORD_TTL_SECONDS}")
# A gateway re-reads a cached entry from Redis (in the background) once it is older than this.
GATEWAY_CACHE_MAX_AGE_SECONDS = env_int("GATEWAY_CACHE_MAX_AGE_SECONDS", 60)
# With Redis unreachable, entries confirmed less than this long ago are still served; others get 503.
GATEWAY_STALE_SECONDS = env_int("GATEWAY_STALE_SECONDS", 120)
# Both bound how long a gateway may honour what it remembers (a deleted token, say) without hearing again.
if not 1 <= GATEWAY_CACHE_MAX_AGE_SECONDS <= GATEWAY_RECORD_TTL_SECONDS:
    raise ImproperlyConfigured("GATEWAY_CACHE_MAX_AGE_SECONDS must be between 1 and GATEWAY_RECORD_TTL_SECONDS")
if not 0 <= GATEWAY_STALE_SECONDS <= 86_400:
    raise ImproperlyConfigured("GATEWAY_STALE_SECONDS must be between 0 and 86400")
GATEWAY_CACHE_SIZE = env_int("GATEWAY_CACHE_SIZE", 50_000)
# Last-request times are written to Redis at most this often per endpoint and gateway process.
GATEWAY_ACTIVITY_SECONDS = env_int("GATEWAY_ACTIVITY_SECONDS", 5)
GATEWAY_UPSTREAM_CONNECT_TIMEOUT = env_int("GATEWAY_UPSTREAM_CONNECT_TIMEOUT", 10)
GATEWAY_UPSTREAM_READ_TIMEOUT = env_int("GATEWAY_UPSTREAM_READ_TIMEOUT", 600)
# Requests in flight to the endpoints at once, per gateway worker (so at most that many upstream connections
# in use); more wait for one to finish.
GATEWAY_UPSTREAM_CONNECTIONS = env_int("GATEWAY_UPSTREAM_CONNECTIONS", 2000)
GATEWAY_DB_CONNECTIONS = env_int("GATEWAY_DB_CONNECTIONS", 4)
# Where the gateway pods run, for the per-endpoint NetworkPolicy that admits them (and nothing else).
GATEWAY_NAMESPACE = env_str("GATEWAY_NAMESPACE", "controlplane")
GATEWAY_POD_LABELS = dict(item.split("=", 1) for item in env_list("GATEWAY_POD_LABELS",
                                                                  ["app.kubernetes.io/component=gateway"]))
# Sources admitted to private endpoints' pods (e.g. the VPC CIDR their PrivateLink NLB sends from).
PRIVATE_ALLOWED_CIDRS = env_list("PRIVATE_ALLOWED_CIDRS", [])
# The cluster's pod (and Service) ranges. A CNI may match pod addresses against an ipBlock, so each private
# range is rendered with the pod ranges inside it excepted: a tenant pod never reaches another tenant's
# private endpoint by sitting in an allowed range. A pod range containing an allowed range would admit
# pods only, so that configuration is refused.
TENANT_POD_CIDRS = env_list("TENANT_POD_CIDRS", [])


def _networks(name: str, values: list[str]) -> list:
    try:
        return [ipaddress.ip_network(value, strict=False) for value in values]
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc} (expected comma-separated CIDRs, e.g. 10.0.0.0/16)") from None


_allowed_networks = _networks("PRIVATE_ALLOWED_CIDRS", PRIVATE_ALLOWED_CIDRS)
for _pods in _networks("TENANT_POD_CIDRS", TENANT_POD_CIDRS):
    for _allowed in _allowed_networks:
        if _allowed.version == _pods.version and _allowed.subnet_of(_pods):
            raise ImproperlyConfigured(
                f"PRIVATE_ALLOWED_CIDRS {_allowed} lies inside the pod range {_pods} (TENANT_POD_CIDRS): it would "
                "admit only pods to private endpoints; allow the range the private traffic comes from instead")
# Tenant pods: pull every image on each start (true), or only images that need credentials (the default),
# and the size limit of the volume the model is downloaded into.
IMAGE_PULL_ALWAYS = env_bool("IMAGE_PULL_ALWAYS", False)
# Tenant egress: an egress NetworkPolicy in every tenant namespace admits DNS and the internet but these
# ranges (private networks holding pods, services, nodes and the control plane; link-local metadata).
TENANT_EGRESS_POLICY = env_bool("TENANT_EGRESS_POLICY", True)
TENANT_EGRESS_DENIED_CIDRS = env_list("TENANT_EGRESS_DENIED_CIDRS", [
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16",
    "fc00::/7", "fe80::/10"])
REPOSITORY_VOLUME_SIZE_LIMIT = env_str("REPOSITORY_VOLUME_SIZE_LIMIT", "200Gi")
GATEWAY_IDLE_SWEEP_SECONDS = env_int("GATEWAY_IDLE_SWEEP_SECONDS", 60)
# The HMAC key that signs every route/token/grant record and feed message (controlplane.records): Redis is
# not trusted to say who may call what. The gateway and every web and worker process must share it. By
# default it is derived from DJANGO_SECRET_KEY (web and worker refuse to start without it), under a label
# of its own, so the Django key itself never signs anything readable in Redis. Beat and migrate publish
# nothing: given neither key they have none (empty, which controlplane.feed refuses to sign with).
GATEWAY_RECORD_KEY = env_str("GATEWAY_RECORD_KEY") or (SECRET_KEY and hmac.new(
    SECRET_KEY.encode(), b"controlplane gateway records", hashlib.sha256).hexdigest())
if not DEBUG and PROCESS not in {"beat", "migrate", "watcher"} and len(GATEWAY_RECORD_KEY) < 32:
    raise ImproperlyConfigured("GATEWAY_RECORD_KEY must be at least 32 characters when DJANGO_DEBUG is off")
# /metrics (and /_gateway/metrics) answer only "Authorization: Bearer <this>"; unset = never served, 404.
GATEWAY_METRICS_TOKEN = env_str("GATEWAY_METRICS_TOKEN")
# Proxies in front of the gateway (the Ingress controller) whose X-Forwarded-For/-Proto are trusted for the
# client's address and scheme; 0 = the peer address is the client and every X-Forwarded-* is the client's.
GATEWAY_TRUSTED_PROXIES = env_int("GATEWAY_TRUSTED_PROXIES", 0)
# Seconds a client may take to send a request's headers once it started (slowloris); idle keep-alive
# connections close after GATEWAY_KEEPALIVE_SECONDS (above the usual ingress upstream keep-alive of 60 s).
GATEWAY_HEADER_TIMEOUT = env_int("GATEWAY_HEADER_TIMEOUT", 10)
GATEWAY_KEEPALIVE_SECONDS = env_int("GATEWAY_KEEPALIVE_SECONDS", 75)
# Requests one client address may have held (waiting for a waking endpoint) at once; more get 429.
GATEWAY_CLIENT_HOLD_LIMIT = env_int("GATEWAY_CLIENT_HOLD_LIMIT", 100)
# Unknown tokens and hosts are remembered as absent this long (at most this many per kind), so a repeated
# one costs neither Redis nor the database; the feed clears one as soon as the record appears.
GATEWAY_NEGATIVE_TTL_SECONDS = env_int("GATEWAY_NEGATIVE_TTL_SECONDS", 10)
GATEWAY_NEGATIVE_CACHE_SIZE = env_int("GATEWAY_NEGATIVE_CACHE_SIZE", 20_000)
# Lookups that miss memory (each a Redis read, perhaps a SQL query) per client address: a burst of
# GATEWAY_MISS_BURST, refilled at GATEWAY_MISS_RATE per second; past that, 429.
GATEWAY_MISS_RATE = env_int("GATEWAY_MISS_RATE", 20)
GATEWAY_MISS_BURST = env_int("GATEWAY_MISS_BURST", 200)
# Path-style addresses (/<account>/<name>/...) are served on an endpoint's own cluster ingress domain and on
# these Hosts only (comma separated, `name` or `name:port`, e.g. "127.0.0.1,localhost"): never on any Host.
GATEWAY_PATH_HOSTS = [host.lower() for host in env_list("GATEWAY_PATH_HOSTS", [])]
for _host in GATEWAY_PATH_HOSTS:
    if not re.fullmatch(r"(?:[a-z0-9._-]+|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?", _host):
        raise ImproperlyConfigured(f"GATEWAY_PATH_HOSTS: {_host!r} is not a host name or address "
                                   "(optionally with :port); wildcards are not accepted")

# ---------------------------------------------------------------- webhooks (controlplane.webhooks) and event streams
# Subscriptions one account may hold.
MAX_WEBHOOKS_PER_ACCOUNT = env_int("MAX_WEBHOOKS_PER_ACCOUNT", 20)
# Outbound webhook requests never reach loopback, link-local (cloud metadata), private, unspecified,
# multicast or reserved addresses unless the address lies in one of these CIDRs (comma separated). Empty by
# default: the control plane's own network is not reachable through a tenant's webhook URL.
WEBHOOK_ALLOWED_CIDRS = env_list("WEBHOOK_ALLOWED_CIDRS", [])
_networks("WEBHOOK_ALLOWED_CIDRS", WEBHOOK_ALLOWED_CIDRS)
# One attempt: connect + send + read the answer within this many seconds; at most this many bytes of the
# answer are read (the log keeps an excerpt of them).
WEBHOOK_TIMEOUT_SECONDS = env_int("WEBHOOK_TIMEOUT_SECONDS", 10)
WEBHOOK_RESPONSE_MAX_BYTES = env_int("WEBHOOK_RESPONSE_MAX_BYTES", 64 * 1024)
# https receivers' certificates are verified against this CA bundle (a PEM file), certifi's when unset.
WEBHOOK_CA_BUNDLE = env_str("WEBHOOK_CA_BUNDLE")
# Retries: exponential from WEBHOOK_RETRY_BASE_SECONDS (doubling, capped at WEBHOOK_RETRY_MAX_SECONDS,
# jittered) until WEBHOOK_RETRY_WINDOW_SECONDS after the event; then the delivery is given up.
WEBHOOK_RETRY_BASE_SECONDS = env_int("WEBHOOK_RETRY_BASE_SECONDS", 30)
WEBHOOK_RETRY_MAX_SECONDS = env_int("WEBHOOK_RETRY_MAX_SECONDS", 6 * 3600)
WEBHOOK_RETRY_WINDOW_SECONDS = env_int("WEBHOOK_RETRY_WINDOW_SECONDS", 24 * 3600)
# A worker claims an attempt for this long; if it dies meanwhile the sweep retries after it. Must exceed the
# timeout, so a slow attempt still in flight is never sent a second time.
WEBHOOK_LEASE_SECONDS = env_int("WEBHOOK_LEASE_SECONDS", 60)
if WEBHOOK_LEASE_SECONDS <= WEBHOOK_TIMEOUT_SECONDS:
    raise ImproperlyConfigured("WEBHOOK_LEASE_SECONDS must be greater than WEBHOOK_TIMEOUT_SECONDS")
# A subscription whose attempts failed this many times in a row is disabled (audited); PATCH enables it.
WEBHOOK_DISABLE_AFTER_FAILURES = env_int("WEBHOOK_DISABLE_AFTER_FAILURES", 50)
# How often beat sends the due deliveries (retries, and any whose message was lost) to the workers.
WEBHOOK_SWEEP_SECONDS = env_int("WEBHOOK_SWEEP_SECONDS", 10)
# Finished deliveries (and their attempt log) are deleted by the sweep once this old.
WEBHOOK_RETENTION_DAYS = env_int("WEBHOOK_RETENTION_DAYS", 30)
# Endpoint event streams (GET .../events?follow=true): a stream ends after this many seconds (the client
# reconnects with Last-Event-ID). Each open stream holds a web worker: the default stays under gunicorn's
# default 30 s worker timeout; raise both together (or run gthread workers) for longer streams.
EVENT_STREAM_MAX_SECONDS = env_int("EVENT_STREAM_MAX_SECONDS", 25)
EVENT_STREAM_POLL_SECONDS = float(env_str("EVENT_STREAM_POLL_SECONDS", "1"))
EVENT_STREAM_HEARTBEAT_SECONDS = env_int("EVENT_STREAM_HEARTBEAT_SECONDS", 10)
# Streams open at once per API token (or session user); more get 429 too_many_streams.
EVENT_STREAM_MAX_PER_TOKEN = env_int("EVENT_STREAM_MAX_PER_TOKEN", 3)

# ---------------------------------------------------------------- AWS (PrivateLink, ECR), per cluster
# Points every boto3 client at another endpoint (a local moto server in tests).
AWS_ENDPOINT_URL = env_str("AWS_ENDPOINT_URL")
# ECR pull credentials last 12 h; they are fetched again once older than this.
REGISTRY_REFRESH_SECONDS = env_int("REGISTRY_REFRESH_SECONDS", 6 * 3600)
REGISTRY_SWEEP_SECONDS = env_int("REGISTRY_SWEEP_SECONDS", 3600)

# ---------------------------------------------------------------- API
# Requests per API token (or session user, or client address) per window: "600/min", "20/s", "off".
API_RATE_LIMIT = env_str("API_RATE_LIMIT", "600/min")
if not re.fullmatch(r"(?i)\s*(off|\d+\s*/\s*(s|sec|second|m|min|minute|h|hour|d|day))\s*", API_RATE_LIMIT):
    raise ImproperlyConfigured(f"API_RATE_LIMIT must look like '600/min' or 'off', got {API_RATE_LIMIT!r}")
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "controlplane.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["controlplane.renderers.FastJSONRenderer", "rest_framework.renderers.BrowsableAPIRenderer"],
    "DEFAULT_PARSER_CLASSES": ["controlplane.parsers.BoundedJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "controlplane.errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["controlplane.throttling.ApiRateThrottle"],
    # Proxies in front whose X-Forwarded-For is trusted for the client address (0: use the peer address,
    # so a client cannot pick its own address to dodge the limit).
    "NUM_PROXIES": env_int("API_NUM_PROXIES", 0),
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
# Admin logins (controlplane.loginlimit): after this many failures within the window, per username or per
# client address, logins for it are refused until the window ends.
ADMIN_LOGIN_MAX_FAILURES_PER_USER = env_int("ADMIN_LOGIN_MAX_FAILURES_PER_USER", 5)
ADMIN_LOGIN_MAX_FAILURES_PER_ADDRESS = env_int("ADMIN_LOGIN_MAX_FAILURES_PER_ADDRESS", 20)
ADMIN_LOGIN_WINDOW_SECONDS = env_int("ADMIN_LOGIN_WINDOW_SECONDS", 900)
if min(ADMIN_LOGIN_MAX_FAILURES_PER_USER, ADMIN_LOGIN_MAX_FAILURES_PER_ADDRESS, ADMIN_LOGIN_WINDOW_SECONDS) < 1:
    raise ImproperlyConfigured("ADMIN_LOGIN_MAX_FAILURES_PER_USER, ADMIN_LOGIN_MAX_FAILURES_PER_ADDRESS and "
                               "ADMIN_LOGIN_WINDOW_SECONDS must be at least 1")
SPECTACULAR_SETTINGS = {
    "TITLE": "Inference Endpoints control plane",
    "DESCRIPTION": (
        "Self-hosted, wire-compatible Inference Endpoints v2 API. Authenticate with `Authorization: Bearer <token>` "
        "(create one with `python manage.py create_token USER`)."
    ),
    "VERSION": "2.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SECURITY": [{"bearerAuth": []}],
    "APPEND_COMPONENTS": {
        "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
    },
    # Swagger UI and Redoc come from drf-spectacular-sidecar (pinned in requirements.txt) and are served as
    # our own static files: the docs pages load nothing from another origin and run under the site-wide
    # policy (controlplane.middleware), `script-src 'self'` included (controlplane.docs).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # No validator badge: it would send the schema's address to validator.swagger.io.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
}

# ---------------------------------------------------------------- logging
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
# Celery logs a line for every task a worker receives, finishes or retries and every one beat sends; with
# sweeps every few seconds they drown everything else. Those loggers log at this level and above: WARNING
# by default (task failures, logged as errors, still show), DEBUG when LOG_LEVEL is DEBUG.
# (Not named CELERY_*: Celery reads every setting with that prefix as its own.)
TASK_LOG_LEVEL = env_str("TASK_LOG_LEVEL", "DEBUG" if LOG_LEVEL == "DEBUG" else "WARNING").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # "django" named here, or Django's own config keeps it at INFO and its request warnings (every 4xx) reach
    # the console through the root's handler whatever LOG_LEVEL says.
    "loggers": {"django": {"level": LOG_LEVEL}, "django.db.backends": {"level": "INFO"},
                **{name: {"level": TASK_LOG_LEVEL} for name in ("celery.app.trace", "celery.worker.strategy",
                                                                "celery.beat")}},
}
