"""The gateway's configuration: a frozen snapshot of ``controlplane.settings`` (the one settings reader).

``from_settings`` builds it (``python -m gateway``, tests); a test that needs one value changed takes
``dataclasses.replace(from_settings(), ...)``.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    """Every field is required: the defaults live once, in ``controlplane.settings``."""

    bind: str
    redis_url: str
    database: dict  # a Django DATABASES entry
    broker_url: str
    task_queue: str
    prefix: str
    queue_limit: int
    hold_timeout: float
    record_ttl: int
    cache_max_age: float
    stale_seconds: float
    cache_size: int
    activity_seconds: float
    upstream_connect_timeout: float
    upstream_read_timeout: float
    upstream_connections: int
    db_connections: int
    probe_interval: float
    wake_resend_seconds: float
    record_key: bytes  # GATEWAY_RECORD_KEY: required (the gateway refuses to start without it)
    metrics_token: str | None  # None: metrics are never served
    trusted_proxies: int
    header_timeout: float
    keepalive_timeout: float
    client_hold_limit: int
    negative_ttl: float
    negative_size: int
    miss_rate: float
    miss_burst: int
    # Hosts (lower-case, ``name`` or ``name:port``) on which path-style addresses are served besides each
    # endpoint's own cluster domain; empty: only there.
    path_hosts: frozenset[str]


    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.bind.rpartition(":")
        return host or "0.0.0.0", int(port)

    def conninfo(self) -> dict:
        """psycopg connection keywords for the Django database entry."""
        db = self.database
        options = {k: v for k, v in (db.get("OPTIONS") or {}).items() if isinstance(v, (str, int))}
        info = {"dbname": db.get("NAME"), "user": db.get("USER") or None, "password": db.get("PASSWORD") or None,
                "host": db.get("HOST") or None, "port": db.get("PORT") or None, "application_name": "gateway",
                **options}
        return {k: v for k, v in info.items() if v not in (None, "")}


def from_settings() -> Config:
    from controlplane import settings as s

    return Config(
        bind=s.GATEWAY_BIND, redis_url=s.REDIS_URL, database=s.DATABASES["default"], broker_url=s.CELERY_BROKER_URL,
        task_queue=s.CELERY_TASK_DEFAULT_QUEUE, prefix=s.GATEWAY_REDIS_PREFIX, queue_limit=s.GATEWAY_QUEUE_LIMIT,
        hold_timeout=float(s.GATEWAY_HOLD_TIMEOUT), probe_interval=s.GATEWAY_PROBE_INTERVAL_MS / 1000,
        wake_resend_seconds=float(s.GATEWAY_WAKE_RESEND_SECONDS), record_ttl=s.GATEWAY_RECORD_TTL_SECONDS,
        cache_max_age=float(s.GATEWAY_CACHE_MAX_AGE_SECONDS), stale_seconds=float(s.GATEWAY_STALE_SECONDS),
        cache_size=s.GATEWAY_CACHE_SIZE, activity_seconds=float(s.GATEWAY_ACTIVITY_SECONDS),
        upstream_connect_timeout=float(s.GATEWAY_UPSTREAM_CONNECT_TIMEOUT),
        upstream_read_timeout=float(s.GATEWAY_UPSTREAM_READ_TIMEOUT),
        upstream_connections=s.GATEWAY_UPSTREAM_CONNECTIONS, db_connections=s.GATEWAY_DB_CONNECTIONS,
        record_key=s.GATEWAY_RECORD_KEY.encode(), metrics_token=s.GATEWAY_METRICS_TOKEN,
        trusted_proxies=s.GATEWAY_TRUSTED_PROXIES, header_timeout=float(s.GATEWAY_HEADER_TIMEOUT),
        keepalive_timeout=float(s.GATEWAY_KEEPALIVE_SECONDS), client_hold_limit=s.GATEWAY_CLIENT_HOLD_LIMIT,
        negative_ttl=float(s.GATEWAY_NEGATIVE_TTL_SECONDS), negative_size=s.GATEWAY_NEGATIVE_CACHE_SIZE,
        miss_rate=float(s.GATEWAY_MISS_RATE), miss_burst=s.GATEWAY_MISS_BURST,
        path_hosts=frozenset(s.GATEWAY_PATH_HOSTS),
    )
