"""The endpoint gateway: an asyncio reverse proxy in front of every public and protected endpoint.

Run it with ``python -m gateway`` (listens on ``GATEWAY_BIND``). It authenticates and routes each request
from memory fed by the Redis route feed (``controlplane.records``; only records signed with the record key
are trusted), streams it to the endpoint's Service, records activity for the idle sweep, wakes
scaled-to-zero endpoints and holds their requests until a replica is ready, and exports Prometheus
metrics to whoever holds the metrics token. See docs/gateway.md.

The process imports ``controlplane.settings`` for its configuration but never sets Django up: no ORM,
no apps, no web stack. Its database access (a cold miss) is a few SQL statements through psycopg.
"""
