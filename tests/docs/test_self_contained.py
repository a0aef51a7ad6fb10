"""What a user reads stays inside the repository: the README, the docs pages, every
command's --help and the schema's descriptions point at nothing a clone does not hold (the
design notes and seed documents the product came from live elsewhere)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import click
import pytest

from api.cli import main
from tests.support.examples import DOCUMENTS, REPOSITORY

pytestmark = pytest.mark.unit  # reads the documents and the --help texts: nothing runs

OUTSIDE = re.compile(r"DESIGN\.md|\bseeds?\b(?! \()|seed 00\d|\.\./shared", re.I)
LINK = re.compile(r"\]\((?!https?://|#)([^)#\s]+)")


def _commands(
    command: click.Command, path: tuple[str, ...] = ("gpuinv",)
) -> Iterator[tuple[str, str]]:
    with click.Context(command, info_name=" ".join(path)) as context:
        yield " ".join(path), command.get_help(context)
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))


@pytest.mark.parametrize("document", DOCUMENTS)
def test_documents_point_at_nothing_outside_the_repository(document: str) -> None:
    text = (REPOSITORY / document).read_text()
    assert not OUTSIDE.findall(text), f"{document}: {OUTSIDE.findall(text)}"
    for target in LINK.findall(text):
        assert ((REPOSITORY / document).parent / target).exists(), f"{document}: {target}"


def test_no_help_text_points_outside_the_repository() -> None:
    helps = dict(_commands(main))
    assert {"gpuinv", "gpuinv serve", "gpuinv sync", "gpuinv profile save"} <= set(helps)
    found = {name: OUTSIDE.findall(text) for name, text in helps.items() if OUTSIDE.search(text)}
    assert not found


def test_the_schema_descriptions_point_at_nothing_outside_the_repository() -> None:
    schema = (REPOSITORY / "schema.graphql").read_text()
    assert not OUTSIDE.findall(schema)
