"""What test modules share besides the fixtures of the conftest.py files.

One module per subject; import the module you need (``from tests.support.api import Api``).
Modules that need neither a database nor a server (``examples``, ``seed``) stay light enough
for the unit tier to import.

- ``ci``: ``IN_CI``: under CI, a PostgreSQL, NetBox, Chromium or terraform missing fails
- ``database``: the PostgreSQL to test on, throw-away databases, emptying one
- ``server``: the real app served in this process (``ServerThread``), free ports
- ``api``: a GraphQL-over-HTTP client, and tokens and tenants written as the CLI writes them
- ``fleet``: devices to import, the labels and the match request that find them
- ``backup``: a database holding a bit of everything, to back up and restore
- ``processes``: ``gpuinv`` as operators run it: the CLI, ``gpuinv serve`` in its own process
- ``statements``: the SQL statements a piece of code sends
- ``metrics``: scraping /metrics
- ``tenancy``: the two-tenant world of the tenancy matrix
- ``hostile``, ``hostile_fleet``: hostile values, and the fleet they are sent against
- ``seed``: the seed's label JSON
- ``sync``: running ``gpuinv sync`` against the test NetBox (which is ``tests.netbox``)
- ``examples``, ``reader``: the documents' code blocks, and running them as a reader would
- ``demo``, ``browser``: pytest plugins (registered in tests/conftest.py) for
  ``gpuinv serve --demo`` and Debian's Chromium
"""

import pkgutil

import pytest

# Their asserts report like the tests' own (pytest rewrites test modules and conftests only).
pytest.register_assert_rewrite(*(f"{__name__}.{m.name}" for m in pkgutil.iter_modules(__path__)))
