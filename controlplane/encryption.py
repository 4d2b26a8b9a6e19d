"""Symmetric encryption of secrets at rest (endpoint secrets, registry passwords, kubeconfigs).

``SECRETS_ENCRYPTION_KEY`` holds one or more comma-separated passphrases; each is stretched to a Fernet
key with SHA-256. The first encrypts; all decrypt, so keys rotate by prepending a new one.
"""

import base64
import hashlib
import json
from functools import lru_cache

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings


@lru_cache(maxsize=4)
def _fernet(keys: str) -> MultiFernet:
    fernets = [Fernet(base64.urlsafe_b64encode(hashlib.sha256(k.strip().encode()).digest()))
               for k in keys.split(",") if k.strip()]
    return MultiFernet(fernets)


def encrypt_json(value) -> str:
    """Encrypt any JSON-serialisable value; empty values encrypt to ''."""
    if not value:
        return ""
    return _fernet(settings.SECRETS_ENCRYPTION_KEY).encrypt(json.dumps(value).encode()).decode()


def decrypt_json(token: str, default=None):
    """Inverse of ``encrypt_json``. Raises cryptography.fernet.InvalidToken if no key fits."""
    if not token:
        return default
    return json.loads(_fernet(settings.SECRETS_ENCRYPTION_KEY).decrypt(token.encode()))
