"""Names every layer and the gateway agree on: account and endpoint names, host ids, and the Kubernetes
names of an account's namespace and an endpoint's objects. Pure: imports nothing but the standard library.
"""

import hashlib
import re

# An account's namespace (its slug) is a lowercase DNS label of at most 40 characters, so that its
# Kubernetes namespace (a prefix of at most 20, then the slug) is the slug itself: no two accounts share one.
ACCOUNT_NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$"
# An endpoint's name is a DNS label of at most 32 characters (its host id adds 17).
ENDPOINT_NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$"
ACCOUNT_NAME_RE = re.compile(ACCOUNT_NAME_PATTERN)
ENDPOINT_NAME_RE = re.compile(ENDPOINT_NAME_PATTERN)

HOST_HASH = 16  # hex digits of sha256(account/name) in a host id
HOST_ID_RE = re.compile(ENDPOINT_NAME_PATTERN[:-1] + f"-[0-9a-f]{{{HOST_HASH}}}$")

# The port an endpoint's Service serves on (the container's own port is the image's: ``images.image_port``).
SERVICE_PORT = 80
MAX_LABEL = 63

# An endpoint's Kubernetes objects are named ``ep-<name>`` and ``<suffix>-ep-<name>``: the suffix goes first so
# that no endpoint's name can spell another endpoint's object (``ep-foo-private`` could be either a private
# ``foo``'s Service or the Service of an endpoint ``foo-private``).
OBJECT_NAME_SUFFIXES = ("private", "secrets", "registry", "gateway",
                        "canary", "canary-secrets", "canary-registry", "canary-gateway")  # a rollout's canary


def short_hash(value: str, length: int = 6) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:length]


def dns_label(value: str, *, max_length: int = MAX_LABEL) -> str:
    """``value`` as a DNS-1123 label: lowercase alphanumerics and '-', at most ``max_length``.

    When anything had to change (case, characters, length), a hash of the original is appended so two
    different inputs never map to the same label.
    """
    cleaned = re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-") or "x"
    if cleaned == value and len(cleaned) <= max_length:
        return cleaned
    suffix = short_hash(value)
    return f"{cleaned[: max_length - len(suffix) - 1].rstrip('-')}-{suffix}"


def namespace_name(prefix: str, account_slug: str) -> str:
    return dns_label(f"{prefix}{account_slug}")


def endpoint_object_name(endpoint_name: str, suffix: str = "") -> str:
    """``ep-<name>``, or ``<suffix>-ep-<name>`` for an endpoint's secondary objects (``suffix`` one of
    ``OBJECT_NAME_SUFFIXES``): starts with a letter (Services need DNS-1035), fits in 63 characters, and no
    two endpoints' objects can share a name whatever they are called."""
    if suffix and suffix not in OBJECT_NAME_SUFFIXES:
        raise ValueError(f"unknown object name suffix {suffix!r}")
    return dns_label(f"{suffix}-ep-{endpoint_name}" if suffix else f"ep-{endpoint_name}")


def host_id(account_slug: str, name: str) -> str:
    """The endpoint's DNS-safe, stable, unique host label: ``<name>-<16 hex of sha256(account/name)>``.

    The gateway routes ``<host_id>.<domain>`` to the endpoint; endpoint names are DNS labels of at most
    32 characters, so the label is at most 49. 64 bits of hash make a chosen collision with another
    tenant's host infeasible.
    """
    digest = hashlib.sha256(f"{account_slug}/{name}".encode()).hexdigest()[:HOST_HASH]
    return dns_label(f"{name}-{digest}")


def host_name_candidate(host: str) -> str | None:
    """The endpoint name a host id starts with, or None when ``host`` cannot be a host id."""
    return host[:-(HOST_HASH + 1)] if HOST_ID_RE.match(host) else None
