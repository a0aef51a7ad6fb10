"""`gpuinv tenant create SLUG --issuer URL`: a tenant with its own identity-provider realm
onboarded in one step (DESIGN.md "Identity"), as the operator runs it, a real `gpuinv`
process on a real database.

- the printed entry is what the service accepts at start-up (parse_issuers, and Settings
  reading GPUINV_OIDC_ISSUERS=@FILE), and tenant and quota are created with it;
- --issuers-file creates or appends to that file, keeping the other entries as they were;
- whatever is refused (a bad URL, an issuer the file has, a damaged file, options without
  --issuer, a failed commit) leaves no tenant behind and the file as it was.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from api.cli import main
from api.db import quota as quota_db
from api.db import tenant as tenant_db
from api.db.session import make_engine, session_factory
from api.domain.access import Role, cli_principal
from api.domain.identity import parse_issuers
from api.settings import Settings
from tests.support.processes import run_cli as run

REALM = "https://id.example.com/realms/acme"
DEFAULT_ROLES = {"partner-admin": "partner-admin", "provisioner": "provisioner", "viewer": "viewer"}
# An issuers file as an operator keeps it: another realm, a shared issuer naming the tenant
# in a claim, written by hand (its layout is not ours to keep, its entries are).
OTHER_ENTRIES = [
    {
        "issuer": "https://id.example.com/realms/initech",
        "audience": "gpuinv",
        "tenant": "initech",
        "roles": {"admins": "partner-admin"},
        "clientId": "dashboard",
    },
    {
        "issuer": "https://login.example.org",
        "audience": "api://gpuinv",
        "tenantClaim": "org",
        "rolesClaim": "roles",
        "roles": {"ops": "platform-admin", "readers": "viewer"},
        "opaque": True,
    },
]


def environment(database_url: str) -> dict[str, str]:
    """The shell's environment less any GPUINV_ setting (an operator's GPUINV_OIDC_ISSUERS
    must not change what the command does here), on the given database."""
    bare = {k: v for k, v in os.environ.items() if not k.startswith("GPUINV_")}
    return bare | {"GPUINV_DATABASE_URL": database_url}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A SQLite file of this test's own, not created yet."""
    return environment(f"sqlite:///{tmp_path / 'gpuinv.db'}")


@pytest.fixture
def existing(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """A database that already holds a tenant (so "nothing created" is about ours)."""
    run(["tenant", "create", "initech"], env, tmp_path)
    return env


@pytest.fixture
def issuers_file(tmp_path: Path) -> Path:
    path = tmp_path / "issuers.json"
    path.write_text(json.dumps(OTHER_ENTRIES) + "\n")  # one line: not the layout we write
    return path


def tenants(database_url: str) -> list[str]:
    engine = make_engine(database_url)
    try:
        with session_factory(engine)() as session:
            return [t.slug for t in tenant_db.list_tenants(session, cli_principal())]
    finally:
        engine.dispose()


def refused(done: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert done.returncode == code, done
    assert done.stdout == "" and "Traceback" not in done.stderr, done
    return done.stderr


# -- what is printed and written ---------------------------------------------------------


def test_the_printed_entry_is_what_the_service_accepts_and_tenant_and_quota_come_with_it(
    database_url: str, db: sessionmaker[Session], tmp_path: Path
) -> None:
    args = ["tenant", "create", "acme", "--gpus", "16", "--nodes", "2", "--issuer", REALM]
    args += ["--audience", "gpu-api", "--client-id", "gpuinv-dashboard", "--roles-claim", "roles"]
    done = run(args, environment(database_url), tmp_path)
    entry = json.loads(done.stdout)
    assert entry == {
        "issuer": REALM,
        "audience": "gpu-api",
        "tenant": "acme",
        "rolesClaim": "roles",
        "roles": DEFAULT_ROLES,
        "clientId": "gpuinv-dashboard",
    }
    assert done.stderr == (
        "Created tenant 'acme'. Add this entry to GPUINV_OIDC_ISSUERS (a JSON array, or "
        "@file) and restart the service.\n"
    )
    # As the operator adds it: into the array the service reads at start-up, as @FILE.
    configured = tmp_path / "configured.json"
    configured.write_text(json.dumps([entry]))
    [issuer] = Settings.from_env({"GPUINV_OIDC_ISSUERS": f"@{configured}"}).oidc_issuers
    assert issuer == parse_issuers([entry], "stdout")[0]
    assert (issuer.issuer, issuer.audience, issuer.tenant, issuer.tenant_claim) == (
        REALM,
        "gpu-api",
        "acme",
        None,
    )
    assert (issuer.roles_claim, issuer.client_id, issuer.opaque) == (
        "roles",
        "gpuinv-dashboard",
        False,
    )
    assert dict(issuer.roles) == {
        "partner-admin": Role.PARTNER_ADMIN,
        "provisioner": Role.PROVISIONER,
        "viewer": Role.VIEWER,
    }
    with db() as session:
        assert [t.slug for t in tenant_db.list_tenants(session, cli_principal())] == ["acme"]
        [quota] = quota_db.list_quotas(session, cli_principal(), "acme", None)
    assert (quota.tenant, quota.gpus, quota.nodes) == ("acme", 16, 2)


def test_the_defaults_are_the_audience_gpuinv_and_the_groups_claim(
    env: dict[str, str], tmp_path: Path
) -> None:
    entry = json.loads(run(["tenant", "create", "acme", "--issuer", REALM], env, tmp_path).stdout)
    assert entry == {
        "issuer": REALM,
        "audience": "gpuinv",
        "tenant": "acme",
        "rolesClaim": "groups",
        "roles": DEFAULT_ROLES,
    }
    assert tenants(env["GPUINV_DATABASE_URL"]) == ["acme"]


def test_the_issuers_file_is_created_when_missing(env: dict[str, str], tmp_path: Path) -> None:
    """In the operator's shell the server's setting already names the file it is about to
    write: a setting the command does not read must not stop it."""
    path = tmp_path / "issuers.json"
    shell = env | {"GPUINV_OIDC_ISSUERS": f"@{path}"}
    done = run(
        ["tenant", "create", "acme", "--issuer", REALM, "--issuers-file", str(path)],
        shell,
        tmp_path,
    )
    assert done.stderr.splitlines()[-1] == (
        f"Created tenant 'acme'. Added its issuer to {path}; restart the service to trust it."
    )
    entry = json.loads(done.stdout)
    assert path.read_text() == json.dumps([entry], indent=2) + "\n"
    [issuer] = Settings.from_env({"GPUINV_OIDC_ISSUERS": f"@{path}"}).oidc_issuers
    assert (issuer.issuer, issuer.tenant) == (REALM, "acme")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpuinv.db", "issuers.json"]


def test_the_issuers_file_gets_the_entry_appended_and_keeps_the_others(
    existing: dict[str, str], issuers_file: Path, tmp_path: Path
) -> None:
    issuers_file.chmod(0o640)  # readable by the service's group: it must stay so
    args = ["tenant", "create", "acme", "--issuer", REALM, "--client-id", "dash"]
    done = run([*args, "--issuers-file", str(issuers_file)], existing, tmp_path)
    entry = json.loads(done.stdout)
    assert json.loads(issuers_file.read_text()) == [*OTHER_ENTRIES, entry]
    assert issuers_file.read_text() == json.dumps([*OTHER_ENTRIES, entry], indent=2) + "\n"
    assert stat.S_IMODE(issuers_file.stat().st_mode) == 0o640
    configured = Settings.from_env({"GPUINV_OIDC_ISSUERS": f"@{issuers_file}"}).oidc_issuers
    assert [(i.issuer, i.tenant, i.client_id) for i in configured] == [
        ("https://id.example.com/realms/initech", "initech", "dashboard"),
        ("https://login.example.org", None, None),
        (REALM, "acme", "dash"),
    ]
    assert tenants(existing["GPUINV_DATABASE_URL"]) == ["acme", "initech"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


# -- refusals: nothing created -----------------------------------------------------------


def test_an_issuer_already_in_the_file_is_refused_and_nothing_is_created(
    existing: dict[str, str], issuers_file: Path, tmp_path: Path
) -> None:
    before = issuers_file.read_bytes()
    taken = OTHER_ENTRIES[0]["issuer"]
    args = ["tenant", "create", "acme", "--gpus", "8", "--issuer", str(taken)]
    said = refused(run([*args, "--issuers-file", str(issuers_file)], existing, tmp_path, False))
    assert said == (
        f"Error: BAD_INPUT: {issuers_file}[0].issuer: {taken!r} is already trusted there "
        "(tenant 'initech')\n"
    )
    assert tenants(existing["GPUINV_DATABASE_URL"]) == ["initech"]
    assert issuers_file.read_bytes() == before


def test_an_existing_tenant_is_refused_and_the_file_is_left_alone(
    existing: dict[str, str], issuers_file: Path, tmp_path: Path
) -> None:
    before = issuers_file.read_bytes()
    args = ["tenant", "create", "initech", "--issuer", REALM, "--issuers-file", str(issuers_file)]
    said = refused(run(args, existing, tmp_path, check=False))
    assert "tenant 'initech' already exists" in said
    assert issuers_file.read_bytes() == before


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--issuer", "id.example.com/realms/acme"),
        ("--issuer", "ftp://id.example.com/realms/acme"),
        ("--issuer", "https://"),
        ("--issuer", "https://id.example.com/realms/acme?tenant=acme"),
        ("--audience", " "),
        ("--roles-claim", ""),
        ("--client-id", ""),
    ],
    ids=str,
)
def test_a_bad_value_is_refused_naming_the_option_and_nothing_is_created(
    option: str, value: str, existing: dict[str, str], issuers_file: Path, tmp_path: Path
) -> None:
    before = issuers_file.read_bytes()
    args = ["tenant", "create", "acme", "--gpus", "8", "--issuers-file", str(issuers_file)]
    args += ["--issuer", REALM] if option != "--issuer" else []
    said = refused(run([*args, option, value], existing, tmp_path, check=False))
    assert said.startswith(f"Error: BAD_INPUT: {option}: ") and repr(value) in said, said
    assert tenants(existing["GPUINV_DATABASE_URL"]) == ["initech"]
    assert issuers_file.read_bytes() == before


def test_a_refusal_before_the_first_tenant_creates_no_database_either(
    env: dict[str, str], tmp_path: Path
) -> None:
    said = refused(run(["tenant", "create", "acme", "--issuer", "nope"], env, tmp_path, False))
    assert said == "Error: BAD_INPUT: --issuer: an http(s) URL, got 'nope'\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "options",
    [
        ["--audience", "gpuinv"],
        ["--client-id", "dashboard"],
        ["--roles-claim", "groups"],
        ["--issuers-file", "issuers.json"],
    ],
    ids=lambda options: options[0],
)
def test_an_issuer_option_without_issuer_is_a_usage_error(
    options: list[str], env: dict[str, str], tmp_path: Path
) -> None:
    said = refused(run(["tenant", "create", "acme", *options], env, tmp_path, False), code=2)
    assert said.splitlines()[-1] == (
        f"Error: {options[0]}: only with --issuer URL (they describe the tenant's own identity "
        "provider)"
    )
    assert list(tmp_path.iterdir()) == []  # no database, no issuers.json


DAMAGED = {
    "not JSON": ('[{"issuer": "https://x.example",\n', "not JSON (Expecting property name"),
    "empty": ("", "not JSON (Expecting value at line 1 column 1)"),
    "an object": (json.dumps(OTHER_ENTRIES[0]), "expected a JSON array of issuer objects"),
    "a bad entry": (json.dumps([{"issuer": "https://x.example"}]), "[0].audience: a non-empty"),
    "the same issuer twice": (json.dumps([OTHER_ENTRIES[0]] * 2), "[1].issuer: "),
    "not UTF-8": ("\udcff", "not UTF-8 text"),
}


@pytest.mark.parametrize("case", list(DAMAGED))
def test_a_damaged_issuers_file_is_refused_naming_it_and_nothing_is_created(
    case: str, existing: dict[str, str], tmp_path: Path
) -> None:
    content, problem = DAMAGED[case]
    path = tmp_path / "issuers.json"
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    before = path.read_bytes()
    args = ["tenant", "create", "acme", "--issuer", REALM, "--issuers-file", str(path)]
    said = refused(run(args, existing, tmp_path, check=False))
    assert said.startswith(f"Error: BAD_INPUT: {path}") and problem in said, said
    assert tenants(existing["GPUINV_DATABASE_URL"]) == ["initech"]
    assert path.read_bytes() == before


# -- a commit that fails after the file was written ---------------------------------------


@pytest.mark.parametrize("had_file", [True, False], ids=["file existed", "no file"])
def test_a_failed_commit_puts_the_issuers_file_back(
    had_file: bool,
    existing: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "issuers.json"
    if had_file:
        path.write_text(json.dumps(OTHER_ENTRIES))
    before = path.read_bytes() if had_file else None
    seen_at_commit: list[list[str]] = []

    def lose_the_race(session: Session) -> None:  # as a concurrent insert of the same slug
        seen_at_commit.append([e["issuer"] for e in json.loads(path.read_text())])
        raise IntegrityError("INSERT INTO tenant", {}, Exception("duplicate key value"))

    monkeypatch.setattr(Session, "commit", lose_the_race)
    result = CliRunner().invoke(
        main,
        ["tenant", "create", "acme", "--issuer", REALM, "--issuers-file", str(path)],
        env={"GPUINV_DATABASE_URL": existing["GPUINV_DATABASE_URL"], "GPUINV_OIDC_ISSUERS": None},
    )
    assert result.exit_code == 1, result.output
    assert "Error: CONCURRENT_UPDATE: " in result.output
    assert seen_at_commit and seen_at_commit[0][-1] == REALM  # written before the commit...
    assert (path.read_bytes() if path.exists() else None) == before  # ... and put back
    monkeypatch.undo()
    assert tenants(existing["GPUINV_DATABASE_URL"]) == ["initech"]
