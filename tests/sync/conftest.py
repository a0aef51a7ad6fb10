"""Tests of the NetBox sync worker, against a real NetBox 4.7.3 (see tests/netbox/fixture.py).

The ``netbox`` and ``clean_netbox`` fixtures come from ``tests.netbox.plugin``, registered in
the top-level ``tests/conftest.py`` (pytest accepts ``pytest_plugins`` only there). Mark NetBox
tests ``pytestmark = pytest.mark.xdist_group("netbox")``: there is one NetBox per machine, and
``--dist loadgroup`` keeps them in one xdist worker (the plugin also serialises them).
"""
