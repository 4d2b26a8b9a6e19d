"""Properties that must hold for every input, checked with Hypothesis.

- ``endpoints.spec.deep_merge`` (the update semantics): ``{}`` is the identity, merging a patch twice
  equals merging it once, ``REPLACED_WHOLE`` paths are replaced, whatever the patch does not name is
  untouched, and neither argument is modified.
- Kubernetes and host names (``controlplane.names``, read-only here): always DNS-1123 labels of at most 63
  characters, deterministic, and distinct for distinct inputs where Kubernetes needs them distinct.
- Quota arithmetic: random sequences of create, update, pause, resume, scale to zero and delete through
  the services. After every step the usage ``endpoints.quota.quota_usage`` reports equals the sum
  computed here from the rows, an admitted step never leaves usage above a limit, and a step refused
  for quota really would have exceeded it.
"""

import copy
import re

import pytest
from django.db import transaction
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

from controlplane.errors import DomainError
from controlplane.names import (
    ACCOUNT_NAME_PATTERN,
    ENDPOINT_NAME_PATTERN,
    dns_label,
    endpoint_object_name,
    host_id,
    namespace_name,
)
from endpoints import services
from endpoints.models import Endpoint, Intent
from endpoints.quota import quota_usage
from endpoints.spec import REPLACED_WHOLE, deep_merge
from quotas.errors import QuotaExceeded
from quotas.models import InstanceType
from quotas.services import quota_set
from tests.factories import endpoint_spec, make_user

# Timing is not what these tests are about (and the suite may share the machine with live servers).
relaxed = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------- deep merge
# Keys of the real spec, so generated documents hit the paths that are replaced whole, plus a few others.
KEYS = st.sampled_from(["model", "image", "env", "secrets", "command", "args", "compute", "scaling", "measure",
                        "tags", "privateService", "route", "name", "a", "b"])
SCALARS = st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3)
JSON = st.recursive(SCALARS | st.lists(SCALARS, max_size=3),
                    lambda children: st.dictionaries(KEYS, children, max_size=4), max_leaves=12)
DOCS = st.dictionaries(KEYS, JSON, max_size=5)


def _at(doc, path: tuple):
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return KeyError
        doc = doc[key]
    return doc


def _leaves(doc: dict, prefix: tuple = ()):
    """(path, value) for every value that is not an object merged key by key (an empty one has none)."""
    for key, value in doc.items():
        path = (*prefix, key)
        if isinstance(value, dict) and ".".join(path) not in REPLACED_WHOLE:
            yield from _leaves(value, path)
        else:
            yield path, value


@relaxed
@given(DOCS)
def test_merging_an_empty_patch_is_the_identity(base):
    assert deep_merge(base, {}) == base


@relaxed
@given(DOCS, DOCS)
def test_merging_a_patch_twice_equals_merging_it_once(base, patch):
    once = deep_merge(base, patch)
    assert deep_merge(once, patch) == once


@relaxed
@given(DOCS, DOCS)
def test_the_patch_wins_wherever_it_speaks_and_replaced_paths_are_replaced_whole(base, patch):
    merged = deep_merge(base, patch)
    for path, value in _leaves(patch):
        assert _at(merged, path) == value, path
    for dotted in REPLACED_WHOLE:  # e.g. model.env: the patch's object, not a union with the base's
        path = tuple(dotted.split("."))
        if _at(patch, path) is not KeyError:
            assert _at(merged, path) == _at(patch, path), dotted


def _put(doc: dict, path: tuple, value) -> dict:
    """``doc`` with ``value`` at ``path``, objects created (or replacing non-objects) on the way."""
    doc = copy.deepcopy(doc)
    node = doc
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value
    return doc


OBJECTS = st.dictionaries(KEYS, JSON, min_size=1, max_size=4)


@relaxed
@given(st.sampled_from(sorted(REPLACED_WHOLE)), DOCS, OBJECTS, DOCS, OBJECTS)
def test_an_object_at_a_replaced_path_replaces_the_stored_one_instead_of_merging(dotted, base, old, patch, new):
    path = tuple(dotted.split("."))
    base, patch = _put(base, path, old), _put(patch, path, new)
    assert _at(deep_merge(base, patch), path) == new


@relaxed
@given(DOCS, DOCS)
def test_what_the_patch_does_not_name_is_untouched(base, patch):
    merged = deep_merge(base, patch)
    for path, value in _leaves(base):
        # Untouched unless the patch names this path or one of its ancestors (as a non-object or whole).
        named = any(_at(patch, path[:i]) is not KeyError and (
            not isinstance(_at(patch, path[:i]), dict) or not isinstance(_at(base, path[:i]), dict)
            or ".".join(path[:i]) in REPLACED_WHOLE) for i in range(1, len(path) + 1))
        if not named:
            assert _at(merged, path) == value, path


@relaxed
@given(DOCS, DOCS)
def test_neither_argument_is_modified_and_the_result_shares_nothing_with_them(base, patch):
    before_base, before_patch = copy.deepcopy(base), copy.deepcopy(patch)
    merged = deep_merge(base, patch)
    assert base == before_base and patch == before_patch

    def mutate(doc):
        for value in doc.values():
            if isinstance(value, dict):
                value["mutated"] = True
                mutate(value)
            elif isinstance(value, list):
                value.append("mutated")

    mutate(merged)
    assert base == before_base and patch == before_patch


# ---------------------------------------------------------------- names
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")  # fullmatch: `$` would admit a trailing newline
ENDPOINT_NAMES = st.from_regex(ENDPOINT_NAME_PATTERN, fullmatch=True)
ACCOUNT_SLUGS = st.from_regex(ACCOUNT_NAME_PATTERN, fullmatch=True)


def assert_label(label: str) -> None:
    assert len(label) <= 63 and DNS_LABEL.fullmatch(label), label


@relaxed
@given(st.text())
def test_dns_label_of_anything_is_a_valid_label_and_deterministic(value):
    label = dns_label(value)
    assert_label(label)
    assert dns_label(value) == label
    if DNS_LABEL.fullmatch(value) and len(value) <= 63:
        assert label == value  # a valid label is kept as it is


@relaxed
@given(st.sets(st.text(max_size=80), min_size=2, max_size=30))
def test_dns_label_keeps_distinct_inputs_distinct(values):
    # Distinct only up to the 24-bit hash appended to inputs that had to change; a sample this size
    # meets a collision with probability ~1e-5, so a failure here is a finding, not noise.
    assert len({dns_label(v) for v in values}) == len(values)


@relaxed
@given(st.sampled_from(["", "ep-", "endpoints-", "tenant-x-"]), st.sets(ACCOUNT_SLUGS, min_size=1, max_size=20))
def test_namespace_names_are_labels_and_distinct_per_account(prefix, slugs):
    names = [namespace_name(prefix, slug) for slug in slugs]
    for name in names:
        assert_label(name)
    assert len(set(names)) == len(slugs)
    assert names == [namespace_name(prefix, slug) for slug in slugs]


@relaxed
@given(st.sets(ENDPOINT_NAMES, min_size=1, max_size=25))
def test_an_accounts_object_names_are_dns_1035_and_distinct_per_kind(names):
    by_kind = {
        "Deployment/Service/HPA": [endpoint_object_name(n) for n in names],
        "Secret": [endpoint_object_name(n, "secrets") for n in names]
                  + [endpoint_object_name(n, "registry") for n in names] + ["hub-token"],
    }
    for kind, labels in by_kind.items():
        for label in labels:
            assert_label(label)
            assert label[0].isalpha(), label  # Services need DNS-1035: a letter first
        assert len(set(labels)) == len(labels), kind
    assert [endpoint_object_name(n) for n in names] == by_kind["Deployment/Service/HPA"]


@relaxed
@given(st.lists(ACCOUNT_SLUGS, min_size=1, max_size=4, unique=True), st.sets(ENDPOINT_NAMES, min_size=1, max_size=15))
def test_host_ids_are_labels_deterministic_and_distinct_across_accounts_and_names(slugs, names):
    pairs = [(slug, name) for slug in slugs for name in names]
    hosts = [host_id(slug, name) for slug, name in pairs]
    for (slug, name), host in zip(pairs, hosts, strict=True):
        assert_label(host)
        assert host == host_id(slug, name)
        assert host.startswith(f"{name}-")  # readable: the endpoint's name first
    assert len(set(hosts)) == len(pairs)


# ---------------------------------------------------------------- quota arithmetic
# (type, size): cpu counts vCPUs, gpu and neuron count devices.
INSTANCES = [("intel-spr", "x1"), ("intel-spr", "x4"), ("intel-spr", "x16"), ("nvidia-l4", "x1"),
             ("nvidia-l4", "x4"), ("inf2", "x1"), ("inf2", "x12")]
NAMES = ["a", "b", "c", "d"]
LIMITS = st.fixed_dictionaries({"cpu": st.integers(1, 40), "gpu": st.integers(1, 10), "neuron": st.integers(1, 24)})


def units(instance: InstanceType) -> int:
    return instance.vcpus if instance.accelerator == "cpu" else instance.accelerator_count


def usage_from_rows(account, exclude: str | None = None) -> dict[str, int]:
    """Σ maxReplica × units per replica over the account's endpoints that are not paused, from the rows."""
    used = {"cpu": 0, "gpu": 0, "neuron": 0}
    for endpoint in Endpoint.objects.filter(account=account).select_related("instance"):
        if endpoint.intent != Intent.PAUSE and endpoint.name != exclude:
            used[endpoint.instance.accelerator] += endpoint.max_replica * units(endpoint.instance)
    return used


def instance(type_size) -> InstanceType:
    return InstanceType.objects.get(vendor="aws", region="us-east-1", instance_type=type_size[0],
                                    instance_size=type_size[1])


def compute(type_size, max_replica: int) -> dict:
    row = instance(type_size)
    return {"accelerator": row.accelerator, "instanceType": row.instance_type, "instanceSize": row.instance_size,
            "scaling": {"minReplica": 1, "maxReplica": max_replica}}


def need_of(step, account) -> tuple[str, int] | None:
    """(accelerator, units) a step asks to hold, for the steps that re-admit; None for the others."""
    kind, name = step[0], step[1]
    current = Endpoint.objects.select_related("instance").filter(account=account, name=name).first()
    if kind == "create":
        row = instance(step[2])
        return row.accelerator, step[3] * units(row)
    if current is None:
        return None
    if kind == "update":
        row = instance(step[2]) if step[2] else current.instance
        return row.accelerator, (step[3] or current.max_replica) * units(row)
    if kind == "resume":
        return current.instance.accelerator, current.max_replica * units(current.instance)
    return None


def run_step(step, account, user) -> None:
    kind, name = step[0], step[1]
    if kind == "create":
        services.endpoint_create(account=account, spec=endpoint_spec(name, compute=compute(step[2], step[3])),
                                 actor=user)
    elif kind == "update":
        current = Endpoint.objects.filter(account=account, name=name).select_related("instance").first()
        type_size = step[2] or ((current.instance.instance_type, current.instance.instance_size) if current else None)
        patch = {"compute": compute(type_size, step[3] or (current.max_replica if current else 1))} if type_size else {}
        services.endpoint_update(account=account, name=name, patch=patch, actor=user)
    else:
        getattr(services, f"endpoint_{kind}")(account=account, name=name, actor=user)


class QuotaMachine(RuleBasedStateMachine):
    """One account with random limits; rules are the lifecycle services, mostly aimed at endpoints that
    were created (the bundle), which may since have been paused, deleted, and so on."""

    endpoints = Bundle("endpoints")

    def __init__(self):
        super().__init__()
        self.atomic = transaction.atomic()  # each run starts from nothing: everything is rolled back
        self.atomic.__enter__()
        self.user = make_user("quota-owner")
        self.account = self.user.personal_account
        self.limits: dict[str, int] = {}

    @initialize(limits=LIMITS)
    def set_limits(self, limits):
        for accelerator, limit in limits.items():
            quota_set(account=self.account, accelerator=accelerator, limit=limit)
        self.limits = limits

    def step(self, *step) -> None:
        need = need_of(step, self.account)
        used_by_others = usage_from_rows(self.account, exclude=step[1])
        try:
            run_step(step, self.account, self.user)
            outcome = "admitted"
        except QuotaExceeded:
            outcome = "quota exceeded"
            assert need is not None, step
            accelerator, units_needed = need
            assert used_by_others[accelerator] + units_needed > self.limits[accelerator], (step, used_by_others)
        except DomainError:  # not found, state conflicts, a taken name: refused, nothing changes
            outcome = "refused"
        event(f"{step[0]}: {outcome}")
        usage = quota_usage(account=self.account)
        assert usage == usage_from_rows(self.account), step
        if outcome == "admitted":
            assert all(usage[acc] <= limit for acc, limit in self.limits.items()), (step, usage, self.limits)

    @rule(target=endpoints, name=st.sampled_from(NAMES), type_size=st.sampled_from(INSTANCES),
          max_replica=st.integers(1, 6))
    def create(self, name, type_size, max_replica):
        self.step("create", name, type_size, max_replica)
        return name

    @rule(name=endpoints, type_size=st.none() | st.sampled_from(INSTANCES), max_replica=st.none() | st.integers(1, 6))
    def update(self, name, type_size, max_replica):
        self.step("update", name, type_size, max_replica)

    @rule(name=endpoints, action=st.sampled_from(["pause", "resume", "scale_to_zero", "delete"]))
    def lifecycle(self, name, action):
        self.step(action, name)

    def teardown(self):
        transaction.set_rollback(True)
        self.atomic.__exit__(None, None, None)


@pytest.mark.django_db
def test_usage_always_equals_the_rows_and_admission_never_exceeds_a_limit():
    run_state_machine_as_test(QuotaMachine, settings=settings(
        max_examples=60, stateful_step_count=30, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
