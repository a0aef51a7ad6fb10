"""The tenancy rule is written once (Principal in api/domain/access.py, applied as SQL by
api/db/scope.py): what each kind of caller sees and where it writes, and no second copy
of the rule anywhere else in the service."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from api.domain.access import Principal, Role

ROOT = Path(__file__).resolve().parents[2]
A, B = "tenant-a", "tenant-b"

ADMIN = Principal("admin", Role.PLATFORM_ADMIN)
PARTNER_A = Principal("partner", Role.PARTNER_ADMIN, A, "a")
PROVISIONER_A = Principal("pipeline", Role.PROVISIONER, A, "a")
VIEWER_A = Principal("portal", Role.VIEWER, A, "a")
SHARED_PIPELINE = Principal("shared", Role.PROVISIONER)  # platform-wide, no tenant
NOC = Principal("noc", Role.VIEWER)  # platform-wide dashboard


@pytest.mark.parametrize(
    ("who", "scope", "sees_a", "sees_b", "sees_platform"),
    [
        (ADMIN, None, True, True, True),
        (PARTNER_A, A, True, False, False),
        (PROVISIONER_A, A, True, False, False),
        (VIEWER_A, A, True, False, False),
        (SHARED_PIPELINE, None, True, True, True),
        (NOC, None, True, True, True),
    ],
)
def test_who_sees_which_tenants_rows(
    who: Principal, scope: str | None, sees_a: bool, sees_b: bool, sees_platform: bool
) -> None:
    assert who.scope_tenant_id == scope
    assert who.may_see(A) is sees_a
    assert who.may_see(B) is sees_b
    assert who.may_see(None) is sees_platform


@pytest.mark.parametrize(
    ("who", "namespace", "uses_a", "uses_b", "uses_platform"),
    [
        (ADMIN, None, True, True, True),
        (PARTNER_A, A, True, False, True),
        (PROVISIONER_A, A, True, False, True),
        (VIEWER_A, A, True, False, True),
        (SHARED_PIPELINE, None, False, False, True),
        (NOC, None, False, False, True),
    ],
)
def test_where_names_live_and_whose_things_serve_whom(
    who: Principal, namespace: str | None, uses_a: bool, uses_b: bool, uses_platform: bool
) -> None:
    """Profiles: the platform's serve every caller, a tenant's only that tenant (and
    the platform admins who manage them); a caller names things in its own namespace."""
    assert who.namespace == namespace
    assert who.may_use(A) is uses_a
    assert who.may_use(B) is uses_b
    assert who.may_use(None) is uses_platform


# A principal's tenant compared with something, or the rule's own parts, read outside
# the two modules that hold the rule.
SECOND_COPY = re.compile(
    r"\b(?:who|principal|caller)\.(?:tenant_id|scope_tenant_id)\s*(?:==|!=|is\b)"
    r"|(?:==|!=)\s*(?:who|principal|caller)\.(?:tenant_id|scope_tenant_id)\b"
    r"|\.scope_tenant_id\b|\.is_platform_admin\b"
)
RULE_MODULES = {ROOT / "api/domain/access.py", ROOT / "api/db/scope.py"}


def test_no_module_but_the_rules_own_compares_a_callers_tenant() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for folder in ("api", "sync", "iac")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path not in RULE_MODULES
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if SECOND_COPY.search(line)
    ]
    assert found == [], "the tenancy rule belongs in Principal and api/db/scope.py"


def test_the_check_finds_a_copy() -> None:
    """The pattern above is not vacuous: the shapes the old copies had are caught."""
    copies = [
        "if not who.is_platform_admin and scope is not None:",
        "scope = who.scope_tenant_id if who.scope_tenant_id is not None else who.tenant_id",
        "return item.tenant_id == who.tenant_id",
        "if who.tenant_id is not None and slug != who.tenant_slug:",
    ]
    assert all(SECOND_COPY.search(line) for line in copies)
