"""Saved profiles and their namespaces: the platform's are read by every tenant and written
by platform admins only; a tenant's own profile of the same name shadows the platform's for
that tenant alone (DESIGN.md "Namespaces")."""

from __future__ import annotations

import json

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.support.api import Api, make_tenant, make_token

SAVE = """mutation($name: String!, $labels: JSON!) {
  saveProfile(name: $name, labels: $labels) { name tenant inventoryType } }"""
PROFILES = "{ profiles { name tenant inventoryType } }"
DRY_RUN = """mutation($input: MatchDeviceInput!) { matchDevice(input: $input) {
  deviceDetails } }"""


def labels(kind: str) -> dict[str, str]:
    config = [{"type": "capacity", "keyInVariable": "gpu", "keyInCapacity": "requiredGPU"}]
    return {
        "paas.envmgmt.io/inventory": kind,
        "paas.envmgmt.io/inventory.config": json.dumps(config),
    }


def device(hostname: str, tenant: str) -> dict[str, object]:
    return {
        "hostname": hostname,
        "tenant": tenant,
        "totalcpu": 64,
        "totalmemoryMB": 524288,
        "totalstorageGB": 1000,
        "gpus": [{"vendorCode": "NVIDIA", "modelNo": "H100"}] * 8,
    }


class Tenants:
    def __init__(self, api: Api, db: sessionmaker[Session]):
        make_tenant(db, "acme")
        make_tenant(db, "globex")
        api.ok(
            "mutation($d: String!) { importInventory(data: $d) { created } }",
            d=json.dumps({"devices": [device("a-01", "acme"), device("g-01", "globex")]}),
        )
        self.platform = api
        self.acme_admin = api.as_(make_token(db, "partner-admin", "acme"))
        self.acme = api.as_(make_token(db, "provisioner", "acme"))
        self.globex_admin = api.as_(make_token(db, "partner-admin", "globex"))
        self.globex = api.as_(make_token(db, "provisioner", "globex"))


@pytest.fixture
def tenants(api: Api, db: sessionmaker[Session]) -> Tenants:
    return Tenants(api, db)


def dry_run(api: Api, profile: str, **extra: object) -> dict[str, object]:
    given = {"environment": "e", "profile": profile, "variables": {"gpu": "1"}, "dryRun": True}
    return api.ok(DRY_RUN, input=given | extra)["matchDevice"]["deviceDetails"]


def test_a_tenants_profile_shadows_the_platforms_for_that_tenant_only(tenants: Tenants) -> None:
    tenants.platform.ok(SAVE, name="gpu", labels=labels("baremetal"))
    saved = tenants.acme_admin.ok(SAVE, name="gpu", labels=labels("vcluster"))["saveProfile"]
    assert saved == {"name": "gpu", "tenant": "acme", "inventoryType": "VCLUSTER"}
    # acme matches with its own profile (a vcluster slice), globex with the platform's
    assert "slice" in dry_run(tenants.acme, "gpu")
    assert "slice" not in dry_run(tenants.globex, "gpu")
    assert tenants.platform.ok(PROFILES)["profiles"] == [
        {"name": "gpu", "tenant": None, "inventoryType": "BAREMETAL"},
        {"name": "gpu", "tenant": "acme", "inventoryType": "VCLUSTER"},
    ]
    assert tenants.globex.ok(PROFILES)["profiles"] == [
        {"name": "gpu", "tenant": None, "inventoryType": "BAREMETAL"}
    ]


def test_a_partner_admin_never_writes_a_platform_profile(tenants: Tenants) -> None:
    tenants.platform.ok(SAVE, name="shared-prof", labels=labels("baremetal"))
    tenants.acme_admin.ok(SAVE, name="shared-prof", labels=labels("vcluster"))
    tenants.acme_admin.ok(SAVE, name="shared-prof", labels=labels("mks"))  # its own, again
    platform = [p for p in tenants.platform.ok(PROFILES)["profiles"] if p["tenant"] is None]
    assert platform == [{"name": "shared-prof", "tenant": None, "inventoryType": "BAREMETAL"}]
    assert "slice" not in dry_run(tenants.globex, "shared-prof")


def test_two_tenants_profiles_of_one_name_are_separate(tenants: Tenants) -> None:
    tenants.acme_admin.ok(SAVE, name="mine", labels=labels("vcluster"))
    tenants.globex_admin.ok(SAVE, name="mine", labels=labels("baremetal"))
    assert tenants.acme.ok(PROFILES)["profiles"] == [
        {"name": "mine", "tenant": "acme", "inventoryType": "VCLUSTER"}
    ]
    assert tenants.globex.ok(PROFILES)["profiles"] == [
        {"name": "mine", "tenant": "globex", "inventoryType": "BAREMETAL"}
    ]


def test_a_platform_wide_match_sees_platform_profiles_only(tenants: Tenants) -> None:
    tenants.acme_admin.ok(SAVE, name="only-acme", labels=labels("vcluster"))
    error = tenants.platform.error(
        DRY_RUN,
        input={"environment": "e", "profile": "only-acme", "variables": {}, "dryRun": True},
    )
    assert error["extensions"]["code"] == "NOT_FOUND"
    assert error["message"] == "profile 'only-acme' not found"
    # matching for acme, a platform admin resolves the name as acme would
    assert "slice" in dry_run(tenants.platform, "only-acme", tenant="acme")


def test_another_tenants_profile_is_not_found_like_an_unknown_one(tenants: Tenants) -> None:
    tenants.acme_admin.ok(SAVE, name="only-acme", labels=labels("vcluster"))
    given = {"environment": "e", "variables": {}, "dryRun": True}
    theirs = tenants.globex.error(DRY_RUN, input=given | {"profile": "only-acme"})
    unknown = tenants.globex.error(DRY_RUN, input=given | {"profile": "no-such"})
    assert theirs["extensions"] == unknown["extensions"] == {"code": "NOT_FOUND"}
    assert theirs["message"] == "profile 'only-acme' not found"
