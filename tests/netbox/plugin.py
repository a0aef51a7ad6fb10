"""pytest fixtures for tests against the real NetBox of :mod:`tests.netbox.fixture`.

``netbox`` (session) brings NetBox up once per test process; ``clean_netbox`` (per test) resets
it to an empty database in a second or two. Mark such tests ``pytest.mark.xdist_group("netbox")``
and run pytest with ``--dist loadgroup`` (``./dev test`` does): there is one NetBox per machine.
A test that uses NetBox also holds it to itself (``netbox_in_use``), so a reset from another
xdist worker or another pytest run waits instead of emptying the database under it.

The session leaves nothing running: a NetBox that the tests started is stopped when the last
pytest process using it ends (each xdist worker registers on first use of ``netbox``; see
:func:`tests.netbox.fixture.netbox_session_end`). A NetBox started by hand (``python -m
tests.netbox.fixture up``) is left up, which also makes the next runs start in a fraction of a
second; so does ``GPUINV_NETBOX_KEEP=1``. ``GPUINV_NETBOX_STOP=1`` stops it either way. Under
``CI=true`` a NetBox that cannot boot fails the tests; elsewhere they skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NoReturn

import pytest

from tests.netbox.fixture import (
    NetBox,
    netbox_in_use,
    netbox_reset,
    netbox_session_end,
    netbox_session_start,
    netbox_up,
)
from tests.support.ci import IN_CI


def _unavailable(exc: Exception) -> NoReturn:
    message = f"NetBox test fixture unavailable: {type(exc).__name__}: {exc}"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def netbox() -> Iterator[NetBox]:
    """A running NetBox 4.7.3 (installed and built on first use: about a minute or two)."""
    try:
        running = netbox_session_start()
    except Exception as exc:
        _unavailable(exc)
    try:
        yield running
    finally:
        netbox_session_end()  # stops it if the tests started it and no other process uses it


@pytest.fixture(autouse=True)
def _netbox_in_use(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that uses NetBox holds it to itself for its duration.

    Needed beyond ``--dist loadgroup``: pytest-xdist 3.8 on pytest 9.2 does not group at all
    (pytest-dev/pytest-xdist#1386), and two pytest runs can share the machine. A test given
    only ``netbox`` also re-checks that it is up (~25 ms): another process may have stopped it.
    """
    # A test parameter that shares the name (test_statuses_map_as_designed's ``netbox``) is
    # no use of NetBox: the fixtures have no params, so a name in callspec.params is one.
    callspec = getattr(request.node, "callspec", None)
    used = set(request.fixturenames) - set(callspec.params if callspec else ())
    if {"netbox", "clean_netbox"}.isdisjoint(used):
        yield
        return
    with netbox_in_use():
        if "clean_netbox" not in request.fixturenames:
            try:
                netbox_up()
            except Exception as exc:
                _unavailable(exc)
        yield


@pytest.fixture
def clean_netbox(netbox: NetBox) -> NetBox:
    """The same NetBox, emptied for this test: only the superuser and its token, IDs from 1."""
    try:
        return netbox_reset()
    except Exception as exc:
        _unavailable(exc)
