"""The one module that imports ``boto3``: AWS clients per cluster and error classification.

A cluster's AWS access is its own (``Cluster.aws_*``): access keys stored encrypted, a profile of the
worker's AWS config, or the worker's ambient credentials. ``AWS_ENDPOINT_URL`` (a local moto server in
the tests) redirects every client. Calls through ``aws_call`` raise only ``AwsError``, transient or not,
like ``kube.KubeError``: the reconciler retries the first and reports the second.
"""

import threading

import boto3
import botocore.config
import botocore.exceptions
from django.conf import settings

from controlplane.encryption import decrypt_json

TRANSIENT_CODES = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
                   "ServiceUnavailable", "InternalError", "InternalFailure", "RequestTimeout",
                   "PriorRequestNotComplete"}
CONFIG = botocore.config.Config(connect_timeout=5, read_timeout=20, retries={"max_attempts": 2, "mode": "standard"})


class AwsError(Exception):
    def __init__(self, message: str, *, code: str = "", transient: bool):
        super().__init__(message)
        self.code, self.transient = code, transient


def aws_enabled(cluster) -> bool:
    return bool(cluster.aws_credentials_encrypted or cluster.aws_profile or cluster.aws_ambient)


_sessions: dict[tuple, boto3.session.Session] = {}
_lock = threading.Lock()


def _session(cluster) -> boto3.session.Session:
    key = (cluster.pk, cluster.updated_at)
    with _lock:
        session = _sessions.get(key)
        if session is None:
            if cluster.aws_credentials_encrypted:
                keys = decrypt_json(cluster.aws_credentials_encrypted)
                session = boto3.session.Session(aws_access_key_id=keys["accessKeyId"],
                                                aws_secret_access_key=keys["secretAccessKey"],
                                                aws_session_token=keys.get("sessionToken"))
            elif cluster.aws_profile:
                session = boto3.session.Session(profile_name=cluster.aws_profile)
            else:
                session = boto3.session.Session()
            for stale in [k for k in _sessions if k[0] == cluster.pk]:
                _sessions.pop(stale)
            _sessions[key] = session
        return session


def aws_client(cluster, service: str, region: str | None = None):
    """A boto3 client for ``service`` in ``region`` (default: the cluster's) with the cluster's credentials.
    Raises AwsError (permanent) when the cluster has no AWS access configured."""
    if not aws_enabled(cluster):
        raise AwsError(f"Cluster {cluster.name} has no AWS access configured", transient=False)
    try:
        return _session(cluster).client(service, region_name=region or cluster.region,
                                        endpoint_url=settings.AWS_ENDPOINT_URL or None, config=CONFIG)
    except botocore.exceptions.BotoCoreError as exc:
        raise AwsError(f"AWS client setup failed: {exc}", transient=False) from exc


def aws_call(method, **kwargs):
    """Call a client method; every failure becomes an AwsError saying whether a retry may help."""
    try:
        return method(**kwargs)
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        transient = code in TRANSIENT_CODES or status >= 500 or status == 429
        raise AwsError(f"AWS {code or status}: {error.get('Message') or exc}", code=code, transient=transient) from exc
    except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError,
            botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectionClosedError) as exc:
        raise AwsError(f"AWS unreachable: {type(exc).__name__}", transient=True) from exc
    except botocore.exceptions.NoCredentialsError as exc:
        raise AwsError("AWS credentials not found for this cluster", transient=False) from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise AwsError(f"AWS call failed: {exc}", transient=True) from exc


def pages(method, key: str, **kwargs):
    """Every item under ``key`` across the pages of a paginated describe call."""
    marker_in, marker_out = ("Marker", "NextMarker") if "Marker" in _shape_inputs(method) else ("NextToken",
                                                                                                 "NextToken")
    while True:
        page = aws_call(method, **kwargs)
        yield from page.get(key, [])
        marker = page.get(marker_out)
        if not marker:
            return
        kwargs = {**kwargs, marker_in: marker}


def _shape_inputs(method) -> set[str]:
    client = method.__self__
    operation = client.meta.method_to_api_mapping[method.__name__]
    return set(client.meta.service_model.operation_model(operation).input_shape.members)
