"""Who commits is predictable: a function given a Session (or a Connection) never commits
or rolls back; one that owns its transactions takes the pool (a sessionmaker or an
Engine) and opens them itself (api/db/session.unit_of_work, claim.connect). Checked over
the source, so a new function that breaks the rule fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GIVEN = {"Session", "Connection"}
ALLOWED = {
    # The unit-of-work plumbing itself: it starts a transaction on a session it was
    # handed fresh from the sessionmaker, before any work.
    ("api/db/session.py", "begin_writing"),
    # match_device's own step, on the connection match_device took from the pool: it
    # commits the claim, or rolls a refused one back before looking for a replay.
    ("api/db/allocation.py", "_claim_and_record"),
}


def _given_a_session(function: ast.FunctionDef) -> bool:
    """An argument annotated Session or Connection (not a sessionmaker of them)."""
    arguments = [*function.args.posonlyargs, *function.args.args, *function.args.kwonlyargs]
    for argument in arguments:
        if argument.annotation is None:
            continue
        words = set(re.findall(r"\w+", ast.unparse(argument.annotation)))
        if words & GIVEN and "sessionmaker" not in words:
            return True
    return False


def _ends_a_transaction(function: ast.FunctionDef) -> bool:
    return any(
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("commit", "rollback")
        for node in ast.walk(function)
    )


def offenders(sources: dict[str, str]) -> list[str]:
    found = []
    for path, text in sources.items():
        for node in ast.walk(ast.parse(text)):
            if (
                isinstance(node, ast.FunctionDef)
                and (path, node.name) not in ALLOWED
                and _given_a_session(node)
                and _ends_a_transaction(node)
            ):
                found.append(f"{path}:{node.lineno} {node.name}")
    return found


def test_no_function_given_a_session_commits_or_rolls_back() -> None:
    sources = {
        str(path.relative_to(ROOT)): path.read_text()
        for folder in ("api", "sync", "iac")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if "migrations" not in path.parts
    }
    assert offenders(sources) == []


def test_the_check_finds_a_function_that_commits_its_callers_session() -> None:
    """The check is not vacuous: the shapes the old offenders had are caught."""
    old = """
def take_lead(session: Session, worker: str, lease: timedelta) -> bool:
    session.commit()

def refresh_statistics(session: "Session", counts: ImportCounts) -> None:
    session.rollback()

def fine(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        session.commit()
"""
    assert offenders({"x.py": old}) == ["x.py:2 take_lead", "x.py:5 refresh_statistics"]
