"""pytest fixtures for the fake API server.

Use from a conftest.py (or a test module)::

    from tests.fakekube.fixtures import fake_kube  # noqa: F401  (re-exported fixture)

``fake_kube`` is function-scoped: a fresh server per test, started before and stopped
after it. Teardown fails the test if the fake itself raised (``kube.internal_errors``),
so a bug in the fake is never mistaken for a bug in the code under test.
"""

from __future__ import annotations

import pytest

from .fake import FakeKube


@pytest.fixture
def fake_kube():
    kube = FakeKube()
    kube.start()
    try:
        yield kube
    finally:
        kube.stop()
    if kube.internal_errors:
        pytest.fail("fakekube internal errors:\n" + "\n".join(kube.internal_errors),
                    pytrace=False)
