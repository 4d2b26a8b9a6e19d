"""Revision pinning: a branch, tag or nothing -> the commit sha, asked of the Hub (or a mirror)."""

import re

from django.conf import settings

SHA_RE = re.compile(r"^[0-9a-f]{40}$")


class RevisionError(Exception):
    """Resolving failed. ``transient`` failures are retried; others fail the endpoint with the Hub's message."""

    def __init__(self, message: str, *, transient: bool):
        super().__init__(message)
        self.transient = transient


def platform_may_read(repository: str, granted: list[str] | tuple[str, ...]) -> bool:
    """Whether an operator's grants (``owner/name``, or ``owner/*``: every repository of that owner, lower
    case) let the platform's Hub token read ``repository`` (compared case-insensitively, as the Hub does)."""
    wanted = repository.lower()
    owner, slash, _name = wanted.partition("/")
    return wanted in granted or bool(slash) and f"{owner}/*" in granted


def revision_resolve(*, repository: str, revision: str | None, token: str | None = None,
                     platform_grants: list[str] | tuple[str, ...] = ()) -> str:
    """The 40-hex commit ``revision`` of ``repository`` points at. A full sha is returned without a call.

    ``token`` is the endpoint account's own Hub token. Without one the request carries the platform's
    ``HF_HUB_TOKEN`` (if any), whose answer is accepted only for a public, ungated repository, or one an
    operator granted to the account (``platform_grants``, see ``platform_may_read``): the platform's access
    never serves a tenant's private or gated repository otherwise."""
    if revision and SHA_RE.fullmatch(revision):
        return revision
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    api = HfApi(endpoint=settings.HF_HUB_URL, token=token or settings.HF_HUB_TOKEN or False)
    try:
        info = api.model_info(repository, revision=revision, timeout=10)
    except RevisionNotFoundError as exc:
        raise RevisionError(f"Revision '{revision}' not found in {repository}: {_hub_message(exc)}",
                            transient=False) from exc
    except RepositoryNotFoundError as exc:
        raise RevisionError(f"Repository {repository} not found on the Hub: {_hub_message(exc)}",
                            transient=False) from exc
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        transient = status is None or status >= 500 or status == 429
        raise RevisionError(f"The Hub answered {status}: {_hub_message(exc)}", transient=transient) from exc
    except Exception as exc:  # network errors of any transport: retry
        raise RevisionError(f"The Hub is unreachable: {type(exc).__name__}", transient=True) from exc
    if not token and (getattr(info, "private", False) or getattr(info, "gated", False)) \
            and not platform_may_read(repository, platform_grants):
        raise RevisionError(f"{repository} is private or gated: give the account its own Hub token "
                            "(PUT /v2/accounts/<namespace>/hub-token), or ask an operator to grant the "
                            "repository to the account", transient=False)
    if not info.sha:
        raise RevisionError(f"The Hub returned no commit for {repository}@{revision or 'main'}", transient=True)
    return info.sha


def _hub_message(exc: Exception) -> str:
    return (getattr(exc, "server_message", None) or str(exc).splitlines()[0])[:300]
