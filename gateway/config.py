"""The gateway's configuration: a frozen snapshot of ``controlplane.settings`` (the one settings reader).

Tests and the benchmark build a ``Config`` directly; ``from_settings`` is what ``python -m gateway`` uses.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Config:
    bind: str = "0.0.0.0:8080"
    redis_url: str = "redis://127.0.0.1:6379/0"
    database: dict = field(default_factory=dict)  # a Django DATABASES entry
    broker_url: str = "redis://127.0.0.1:6379/0"
    task_queue: str = "celery"
    prefix: str = "gateway:"
    queue_limit: int = 1000
    hold_timeout: float = 120.0
    record_ttl: int = 600
    cache_max_age: float = 60.0
    stale_seconds: float = 120.0
    cache_size: int = 50_000
    activity_seconds: float = 5.0
    upstream_connect_timeout: float = 10.0
    upstream_read_timeout: float = 600.0
    upstream_connections: int = 2000
    db_connections: int = 4
    probe_interval: float = 1.0
    wake_resend_seconds: float = 10.0
    record_key: bytes = b""  # GATEWAY_RECORD_KEY: required (the gateway refuses to start without it)
    metrics_token: str | None = None  # None: metrics are never served
    trusted_proxies: int = 0
    header_timeout: float = 10.0
    keepalive_timeout: float = 75.0
    client_hold_limit: int = 100
    negative_ttl: float = 10.0
    negative_size: int = 20_000
    miss_rate: float = 20.0
    miss_burst: int = 200
    # Hosts (lower-case, ``name`` or ``name:port``) on which path-style addresses are served besides each
    # endpoint's own cluster domain; empty: only there.
    path_hosts: frozenset[str] = frozenset()

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
        hold_timeout=float(s.GATEWAY_HOLD_TIMEOUT), record_ttl=s.GATEWAY_RECORD_TTL_SECONDS,
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
