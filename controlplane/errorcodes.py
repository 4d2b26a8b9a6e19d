"""Every machine-readable error code the API and the gateway answer with, each once, with what it means.

An error body is ``{"error": <message for people>, "code": <one of these>, "fields"?: {...}}``. Clients
branch on the code, never on the message. Pure (the gateway imports it); docs/errors.md lists the same
table, and tests/test_error_codes.py keeps code, docs and call sites in step.
"""

from enum import StrEnum


class Code(StrEnum):
    # Requests
    BAD_REQUEST = "bad_request"
    INVALID = "invalid"
    PARSE_ERROR = "parse_error"
    BODY_TOO_LARGE = "body_too_large"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_ACCEPTABLE = "not_acceptable"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    SERVICE_UNAVAILABLE = "service_unavailable"
    INTERNAL_ERROR = "internal_error"
    # Who is calling
    UNAUTHENTICATED = "unauthenticated"
    INVALID_TOKEN = "invalid_token"
    FORBIDDEN = "forbidden"
    TOKEN_LIMIT = "token_limit"
    # Accounts, quotas and the catalog
    NAME_TAKEN = "name_taken"
    CONFLICT = "conflict"
    QUOTA_EXCEEDED = "quota_exceeded"
    BUDGET_EXHAUSTED = "budget_exhausted"
    REQUEST_PENDING = "request_pending"
    ALREADY_DECIDED = "already_decided"
    UNKNOWN_INSTANCE = "unknown_instance"
    INSTANCE_UNAVAILABLE = "instance_unavailable"
    # Endpoints
    ENDPOINT_NOT_FOUND = "endpoint_not_found"
    ENDPOINT_LIMIT = "endpoint_limit"
    STATE_CONFLICT = "state_conflict"
    ALREADY_RUNNING = "already_running"
    UNSUPPORTED_TASK = "unsupported_task"
    TRAFFIC_UNAVAILABLE = "traffic_unavailable"
    TOO_MANY_STREAMS = "too_many_streams"
    # Webhooks
    WEBHOOK_NOT_FOUND = "webhook_not_found"
    WEBHOOK_LIMIT = "webhook_limit"
    WEBHOOK_DISABLED = "webhook_disabled"
    REVISION_NOT_FOUND = "revision_not_found"
    REVISION_NOT_SERVED = "revision_not_served"
    NO_PREVIOUS_REVISION = "no_previous_revision"
    ROLLBACK_SECRETS_MISSING = "rollback_secrets_missing"
    ROLLOUT_IN_PROGRESS = "rollout_in_progress"
    NO_ROLLOUT = "no_rollout"
    # The inference catalog
    CATALOG_NOT_FOUND = "catalog_not_found"
    NO_MATCHING_RECIPE = "no_matching_recipe"
    # Clusters
    CLUSTER_EXISTS = "cluster_exists"
    CLUSTER_DUPLICATE = "cluster_duplicate"
    CLUSTER_UNAVAILABLE = "cluster_unavailable"
    # The gateway
    TOO_MANY_LOOKUPS = "too_many_lookups"
    GATEWAY_UNAVAILABLE = "gateway_unavailable"
    ENDPOINT_PAUSED = "endpoint_paused"
    ENDPOINT_UNAVAILABLE = "endpoint_unavailable"
    ENDPOINT_FAILED = "endpoint_failed"
    ENDPOINT_WAKING = "endpoint_waking"
    SIMULATED_NODE = "simulated_node"
    TOO_MANY_WAITING = "too_many_waiting"
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_ERROR = "upstream_error"


MEANING: dict[Code, str] = {
    Code.BAD_REQUEST: "The request is malformed (not a path, a bad Host, a request line we cannot read)",
    Code.INVALID: "The body or query fails validation; `fields` names each field and why",
    Code.PARSE_ERROR: "The body is not JSON, or nests deeper than the limit",
    Code.BODY_TOO_LARGE: "The body is larger than the limit",
    Code.METHOD_NOT_ALLOWED: "This route does not take this method",
    Code.NOT_ACCEPTABLE: "The Accept header asks for a format the route does not produce",
    Code.UNSUPPORTED_MEDIA_TYPE: "The body's Content-Type is not JSON",
    Code.NOT_FOUND: "Nothing at this address (or not visible to the caller)",
    Code.RATE_LIMITED: "Too many requests; retry after Retry-After seconds",
    Code.SERVICE_UNAVAILABLE: "The database is unreachable; retry shortly",
    Code.INTERNAL_ERROR: "A fault of ours; the request may or may not have taken effect",
    Code.UNAUTHENTICATED: "No credentials were sent, or the API and the gateway could not read them",
    Code.INVALID_TOKEN: "The token is unknown, expired or revoked, or its user is deactivated",
    Code.FORBIDDEN: "The caller's role or token does not allow this",
    Code.TOKEN_LIMIT: "The user holds the maximum number of live tokens",
    Code.NAME_TAKEN: "An account or endpoint of that name exists",
    Code.CONFLICT: "The change conflicts with the current state",
    Code.QUOTA_EXCEEDED: "Admitting this would exceed the account's quota for the accelerator",
    Code.BUDGET_EXHAUSTED: "The account's monthly budget is spent and set to refuse scale-ups",
    Code.REQUEST_PENDING: "A quota request for this accelerator is already pending",
    Code.ALREADY_DECIDED: "The quota request was already approved or rejected",
    Code.UNKNOWN_INSTANCE: "No compute in the catalog matches; `fields` names the first that does not",
    Code.INSTANCE_UNAVAILABLE: "The compute exists but cannot be ordered now",
    Code.ENDPOINT_NOT_FOUND: "No endpoint of that name in the account (or at this gateway address)",
    Code.ENDPOINT_LIMIT: "The account holds the maximum number of endpoints",
    Code.STATE_CONFLICT: "The endpoint's state does not allow the operation (e.g. it is being deleted)",
    Code.ALREADY_RUNNING: "Resume of an endpoint that is not paused or scaled to zero",
    Code.UNSUPPORTED_TASK: "The managed image does not serve this task",
    Code.TRAFFIC_UNAVAILABLE: "The endpoint's traffic statistics (kept in Redis) cannot be read right now; retry",
    Code.TOO_MANY_STREAMS: "The token has the maximum number of event streams open; close one or retry later",
    Code.WEBHOOK_NOT_FOUND: "No webhook (or webhook delivery) of that id in the account",
    Code.WEBHOOK_LIMIT: "The account holds the maximum number of webhooks",
    Code.WEBHOOK_DISABLED: "The webhook is disabled; enable it before redelivering",
    Code.REVISION_NOT_FOUND: "The endpoint has no spec revision of that number",
    Code.REVISION_NOT_SERVED: "Rollback to a spec revision that never reached running",
    Code.NO_PREVIOUS_REVISION: "Rollback without a revision, but no revision served before the current one",
    Code.ROLLBACK_SECRETS_MISSING: "The revision used secret values the endpoint no longer stores; `fields` names them",
    Code.ROLLOUT_IN_PROGRESS: "A canary rollout is under way: promote or abort it first",
    Code.NO_ROLLOUT: "Promote or abort, but the endpoint has no canary rollout under way",
    Code.CATALOG_NOT_FOUND: "No model or recipe of that id is listed in the inference catalog",
    Code.NO_MATCHING_RECIPE: "None of the catalog model's recipes has the accelerator or GGUF file asked for",
    Code.CLUSTER_EXISTS: "Another enabled cluster serves this vendor and region",
    Code.CLUSTER_DUPLICATE: "Another registration uses the same API server (register it once, or force)",
    Code.CLUSTER_UNAVAILABLE: "The endpoint's cluster cannot be reached right now",
    Code.TOO_MANY_LOOKUPS: "Too many requests for unknown tokens or endpoints from this address",
    Code.GATEWAY_UNAVAILABLE: "The gateway cannot verify the request now (Redis and Postgres unreachable)",
    Code.ENDPOINT_PAUSED: "The endpoint is paused; resume it to serve",
    Code.ENDPOINT_UNAVAILABLE: "No cluster serves the endpoint yet",
    Code.ENDPOINT_FAILED: "The endpoint failed; the message says why",
    Code.ENDPOINT_WAKING: "The endpoint is starting or waking and no replica was ready in time; retry",
    Code.SIMULATED_NODE: "The endpoint runs on a simulated node (local development): nothing answers",
    Code.TOO_MANY_WAITING: "Too many requests already wait for this endpoint (or from this address)",
    Code.UPSTREAM_UNAVAILABLE: "The endpoint's Service is not reachable",
    Code.UPSTREAM_TIMEOUT: "The endpoint did not answer in time",
    Code.UPSTREAM_ERROR: "The endpoint closed the connection without answering",
}
