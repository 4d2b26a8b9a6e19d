"""The route feed's records: what Django publishes and the gateway caches, in one pure module.

Both sides import this module (it imports no Django, no I/O), so a record built by the web process
from the ORM and one built by the gateway from its own SQL on a cold miss are the same dict.

Three kinds of record, each stored in Redis under ``<prefix><kind>:<key>`` as JSON
``{"v": <version>, "sig": <hex>, "record": <dict or null>}`` (``null`` = known absent):

- ``route:<host id>`` -> the endpoint behind a host (see ``route_record``);
- ``token:<sha256 digest>`` -> ``{"user", "expires", "revoked"}`` (a deactivated user's tokens count as
  revoked);
- ``grant:<account id>:<user id>`` -> ``{"role"}`` (organisation accounts only: a personal account's
  owner is in its route record).

``version`` is the wall-clock nanosecond at which the writer *started reading* the database, so a
writer that read older data never overwrites a newer record (``CAS_SET`` refuses it). Every accepted
write is also published on ``<prefix>feed`` so each gateway updates its memory at once.

``sig`` is HMAC-SHA256, under the key the gateway and the control plane share (``GATEWAY_RECORD_KEY``),
of ``<kind>:<key>``, the version and the record's JSON exactly as stored: whoever can write to Redis
but lacks the key cannot forge a record, move one to another key, or alter one. ``parse_stored`` and
``parse_feed`` raise ``BadSignature`` for anything unsigned or signed otherwise. (A captured genuine
record can still be replayed under its own key: the gateway takes no stored record older than the record
TTL, and never one older than what it remembers.)
"""

import hashlib
import hmac
import json
import re

from .images import image_health_route
from .names import SERVICE_PORT, endpoint_object_name, host_id, namespace_name

KINDS = ("route", "token", "grant")
FEED = "feed"
ACTIVITY = "activity"  # sorted set: endpoint id -> unix seconds of the last request seen
# Every control-plane API token starts with this; the gateway never forwards one upstream.
TOKEN_PREFIX = "cpt_"
# The task the gateway sends (by name: it imports no task code) to wake a scaled-to-zero endpoint.
WAKE_TASK = "workers.endpoint_wake"

# KEYS[1] record key, KEYS[2] feed channel; ARGV: version, record JSON ("null" = absent), ttl seconds,
# publish flag ("1" to publish), key prefix, signature. Returns 1 when written, 0 when a newer version is
# already stored.
CAS_SET = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, decoded = pcall(cjson.decode, current)
  if ok and type(decoded) == 'table' and tonumber(decoded['v']) and tonumber(decoded['v']) > tonumber(ARGV[1]) then
    return 0
  end
end
local value = '{"v":' .. ARGV[1] .. ',"sig":"' .. ARGV[6] .. '","record":' .. ARGV[2] .. '}'
redis.call('SET', KEYS[1], value, 'EX', tonumber(ARGV[3]))
if ARGV[4] == '1' then
  redis.call('PUBLISH', KEYS[2], string.sub(KEYS[1], string.len(ARGV[5]) + 1) .. ' ' .. value)
end
return 1
"""


# The stored form CAS_SET writes, read back byte for byte: the signature covers the record's JSON as
# written, so nothing is re-serialised (and no canonical form is needed) to check it.
STORED_RE = re.compile(rb'\{"v":(-?[0-9]{1,20}),"sig":"([0-9a-f]{64})","record":(.*)\}', re.DOTALL)


class BadSignature(ValueError):
    """A stored value or feed message that is unsigned, malformed or signed with another key."""


def record_key(prefix: str, kind: str, key: str) -> str:
    return f"{prefix}{kind}:{key}"


def sign(signing_key: bytes, name: str, version: int | bytes, record_json: bytes) -> str:
    """The hex HMAC-SHA256 of one record: ``name`` is ``<kind>:<key>`` (the Redis key without its prefix)."""
    version = version if isinstance(version, bytes) else str(version).encode()
    return hmac.new(signing_key, b"%s\n%s\n%s" % (name.encode(), version, record_json), hashlib.sha256).hexdigest()


def cas_args(prefix: str, kind: str, key: str, version: int, record: dict | None, ttl: int,
             publish: bool, *, signing_key: bytes) -> tuple[list[str], list[str]]:
    """KEYS and ARGV for ``CAS_SET``, the record signed with ``signing_key``."""
    record_json = json.dumps(record, separators=(",", ":"))
    signature = sign(signing_key, f"{kind}:{key}", version, record_json.encode())
    return ([record_key(prefix, kind, key), prefix + FEED],
            [str(version), record_json, str(ttl), "1" if publish else "0", prefix, signature])


def parse_stored(raw: bytes | str | None, name: str, *, signing_key: bytes) -> tuple[int, dict | None] | None:
    """``(version, record)`` from the value stored under ``name`` (``<kind>:<key>``); None when there is
    none. Raises ``BadSignature`` unless the value is exactly as ``CAS_SET`` writes it, signed with
    ``signing_key`` for this very name."""
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = raw.encode()
    match = STORED_RE.fullmatch(raw)
    if match is None:
        raise BadSignature("not a signed record")
    version, signature, record_json = match.groups()
    if not hmac.compare_digest(sign(signing_key, name, version, record_json), signature.decode()):
        raise BadSignature("bad signature")
    try:
        record = json.loads(record_json)
    except ValueError as exc:  # signed with our key yet not JSON: only a writer holding the key could
        raise BadSignature("signed, but not JSON") from exc
    if record is not None and not isinstance(record, dict):
        raise BadSignature("signed, but not a record")
    return int(version), record


def parse_feed(message: bytes | str, *, signing_key: bytes) -> tuple[str, str, int, dict | None]:
    """``(kind, key, version, record)`` from a feed message ``<kind>:<key> <stored JSON>``; raises
    ``BadSignature`` as ``parse_stored`` does."""
    if isinstance(message, str):
        message = message.encode()
    name, _, body = message.partition(b" ")
    try:
        name_text = name.decode()
    except UnicodeDecodeError as exc:
        raise BadSignature("not a feed message") from exc
    kind, _, key = name_text.partition(":")
    version, record = parse_stored(body, name_text, signing_key=signing_key)
    return kind, key, version, record


# ---------------------------------------------------------------- record builders
def route_record(row: dict) -> dict:
    """The route record of one endpoint row.

    ``row`` keys: id, name, type, state, intent, message, image, account_id, account_slug, account_kind,
    account_user_id, canary (None, or the canary rollout taking traffic: ``{generation, weight, sticky}``),
    and the serving cluster's namespace_prefix, service_url_template, ingress_domain and simulated (None
    when no cluster serves the endpoint's region). ``domain`` is the ingress domain the endpoint's
    host-style address lives under: the gateway serves ``<host>.<domain>`` and no other.

    ``canary`` in the record: None, or ``{"upstream", "weight", "sticky", "version"}``: the canary
    Service's address, the percent of requests it takes, whether a caller keeps its side, and the traffic
    version its requests are counted under too (``controlplane.traffic``).
    """
    namespace = service = upstream = canary = None
    if row.get("service_url_template"):
        namespace = namespace_name(row["namespace_prefix"], row["account_slug"])
        service = endpoint_object_name(row["name"])
        upstream = row["service_url_template"].format(service=service, namespace=namespace, port=SERVICE_PORT)
        if row.get("canary"):
            canary_url = row["service_url_template"].format(
                service=endpoint_object_name(row["name"], "canary"), namespace=namespace, port=SERVICE_PORT)
            canary = {"upstream": canary_url.rstrip("/"), "weight": row["canary"]["weight"],
                      "sticky": row["canary"]["sticky"], "version": f"r{row['canary']['generation']}"}
    return {
        "id": row["id"], "account": row["account_slug"], "accountId": row["account_id"],
        "owner": row["account_user_id"] if row["account_kind"] == "user" else None,
        "name": row["name"], "host": host_id(row["account_slug"], row["name"]), "type": row["type"],
        "state": row["state"], "intent": row["intent"], "message": row["message"],
        "upstream": upstream.rstrip("/") if upstream else None, "health": image_health_route(row["image"]),
        "namespace": namespace or "", "object": service or endpoint_object_name(row["name"]),
        "simulated": bool(row.get("simulated")), "domain": (row.get("ingress_domain") or "").lower() or None,
        "canary": canary,
    }


def token_record(*, user_id: int, expires_at: float | None, revoked: bool) -> dict:
    """``expires_at`` in unix seconds (None = never)."""
    return {"user": user_id, "expires": expires_at, "revoked": revoked}


def grant_record(role: str | None) -> dict:
    return {"role": role}
