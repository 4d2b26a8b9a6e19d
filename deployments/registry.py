"""Pull credentials for private cloud registries: ECR images on clusters with AWS access.

An image ``<account>.dkr.ecr.<region>.amazonaws.com/...`` given without explicit credentials pulls with a
token from ``ecr.get_authorization_token``, rendered as the endpoint's image pull Secret (the same one
explicit credentials become). Tokens last 12 hours; each is stored once per (cluster, registry) and
fetched again once older than ``REGISTRY_REFRESH_SECONDS`` (6 h) or half its lifetime, by the reconcile
that needs it. The beat task re-enqueues endpoints whose credential is due, so a running endpoint's
Secret is renewed long before the token expires.
"""

import base64
import logging
import re
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from controlplane.encryption import decrypt_json, encrypt_json

from .aws import AwsError, aws_call, aws_client, aws_enabled
from .models import Cluster, RegistryCredential

log = logging.getLogger(__name__)
ECR_RE = re.compile(r"^(?P<server>(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com"
                    r"(?:\.cn)?)/")


def ecr_registry(image_url: str) -> tuple[str, str, str] | None:
    """``(server, account, region)`` of an ECR image URL, None for any other registry."""
    match = ECR_RE.match(image_url)
    return (match["server"], match["account"], match["region"]) if match else None


def _due(credential: RegistryCredential, now: datetime) -> bool:
    limit = timedelta(seconds=settings.REGISTRY_REFRESH_SECONDS)
    if credential.expires_at and credential.expires_at > credential.fetched_at:
        limit = min(limit, (credential.expires_at - credential.fetched_at) / 2)
    return now - credential.fetched_at >= limit


def _as_registry(credential: RegistryCredential) -> dict:
    return {"server": credential.server, "username": credential.username,
            "password": decrypt_json(credential.password_encrypted)}


def registry_credentials(*, cluster: Cluster, image_url: str, refresh: bool,
                         now: datetime | None = None) -> dict | None:
    """``{"server", "username", "password"}`` to pull ``image_url`` on ``cluster``, or None when no cloud
    credential applies (not ECR, or no AWS access). With ``refresh``, a missing or due credential is
    fetched first (raises AwsError); without, the stored one is returned as it is (the drift sweep)."""
    found = ecr_registry(image_url)
    if found is None or not aws_enabled(cluster):
        return None
    server, account, region = found
    now = now or timezone.now()
    credential = RegistryCredential.objects.filter(cluster=cluster, server=server).first()
    if credential is not None and (not refresh or not _due(credential, now)):
        return _as_registry(credential)
    if not refresh:
        return None
    ecr = aws_client(cluster, "ecr", region)
    data = aws_call(ecr.get_authorization_token, registryIds=[account])["authorizationData"][0]
    username, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    if not password:
        raise AwsError("ECR returned an authorization token without a password", transient=True)
    credential, _ = RegistryCredential.objects.update_or_create(
        cluster=cluster, server=server,
        defaults={"username": username, "password_encrypted": encrypt_json(password), "fetched_at": now,
                  "expires_at": data.get("expiresAt")})
    log.info("registry.refreshed cluster=%s server=%s", cluster.name, server)
    return _as_registry(credential)


def endpoints_with_due_credentials(*, now: datetime | None = None) -> list[int]:
    """Ids of endpoints whose ECR pull credential is due for a refresh (their reconcile fetches it)."""
    from endpoints.models import Endpoint, Intent

    now = now or timezone.now()
    due = [c for c in RegistryCredential.objects.select_related("cluster") if _due(c, now)]
    ids = []
    for credential in due:
        cluster = credential.cluster
        for pk, image in (Endpoint.objects.filter(instance__vendor=cluster.vendor, instance__region=cluster.region)
                          .exclude(intent=Intent.DELETE).values_list("pk", "image")):
            (_, body), = image.items()
            url = (body or {}).get("url") or ""
            if url.startswith(credential.server + "/") and not (body or {}).get("credentials"):
                ids.append(pk)
    return ids
