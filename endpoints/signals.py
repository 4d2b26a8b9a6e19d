"""What this app tells the layers above it, without importing them."""

from django.dispatch import Signal

# Sent after an endpoint service's transaction commits, with ``account_slug``, ``name`` and ``endpoint_id``:
# the endpoint's spec, intent or existence changed. ``deployments`` publishes its gateway route on it.
# Receivers must not raise (the request already committed).
endpoint_changed = Signal()
