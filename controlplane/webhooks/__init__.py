"""Signed lifecycle webhooks: per-account subscriptions, a transactional outbox of deliveries, and the
sender that signs them (Standard Webhooks) and refuses internal addresses.

- ``events``: the event types and ``emit`` (what services call inside their transaction), plus the hooks
  later features call (``rollout_step_emit``, ``budget_threshold_emit``);
- ``signing``: secrets and the ``webhook-signature`` header;
- ``addresses``: the SSRF guard (URL shape, resolution, allowed addresses);
- ``sender``: claims a due delivery, sends one attempt to the pinned address, records it;
- ``services`` / ``selectors``: subscription writes and reads for the API and the admin.
"""
