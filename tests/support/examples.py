"""The code blocks of the repository's Markdown documents, read as examples to run.

A block is run by its language (``graphql``, ``sh``, ``hcl``, ``python``); an HTML comment
just before it, invisible once rendered, says when it is something else:

    <!-- example: file NAME -->     the block is the content of file NAME, which later
                                    blocks of the same document use (``gpuinv import NAME``)
    <!-- example: variables -->     JSON: the variables of the GraphQL block just before
    <!-- example: terraform -->     JSON: a Terraform JSON configuration (main.tf.json)
    <!-- example: netbox -->        ``sh`` that needs a NetBox: run by the sync tests
    <!-- example: fragment REASON -->  not run (a long-running server, the test command
                                    itself); still checked for syntax

``text`` blocks are what a command prints, not examples. A block in any other language
without a directive is an error, so a new example cannot go untested by accident.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from markdown_it import MarkdownIt

REPOSITORY = Path(__file__).resolve().parents[2]
DOCUMENTS = [
    "README.md",
    "sync/README.md",
    "iac/docs/index.md",
    "iac/docs/resources/allocation.md",
    "iac/docs/resources/quota.md",
    "iac/docs/resources/provision_request.md",
    "iac/docs/data-sources/devices.md",
    "iac/docs/data-sources/match.md",
    "iac/docs/cdktf.md",
]
RUNNABLE = {"graphql", "sh", "hcl", "python"}
DIRECTIVE = re.compile(r"<!--\s*example:\s*(?P<kind>[a-z]+)\s*(?P<argument>.*?)\s*-->", re.S)
KINDS = {"file", "variables", "terraform", "netbox", "fragment"}


@dataclass(frozen=True)
class Example:
    document: str  # relative to the repository
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    kind: str  # "run", "output", or a directive's kind
    argument: str = ""  # the directive's argument: a file name, a reason

    @property
    def where(self) -> str:
        return f"{self.document}:{self.line}"


def examples(document: str) -> list[Example]:
    """Every fenced block of ``document``, with what to do with it."""
    tokens = MarkdownIt("commonmark").parse((REPOSITORY / document).read_text())
    found: list[Example] = []
    directive: re.Match[str] | None = None
    for token in tokens:
        if token.type == "html_block":
            directive = DIRECTIVE.search(token.content)
            continue
        if token.type != "fence":
            directive = None
            continue
        language = token.info.split()[0] if token.info.strip() else ""
        line = token.map[0] + 1 if token.map else 0
        if directive:
            kind, argument = directive["kind"], directive["argument"]
            if kind not in KINDS:
                raise ValueError(f"{document}:{line}: unknown directive 'example: {kind}'")
        elif language == "text":
            kind, argument = "output", ""
        elif language in RUNNABLE:
            kind, argument = "run", ""
        else:
            raise ValueError(
                f"{document}:{line}: a ```{language or '(no language)'} block with no "
                "'<!-- example: ... -->' directive: say how it is run, or mark it a fragment"
            )
        found.append(Example(document, line, language, token.content, kind, argument))
        directive = None
    return found


def all_examples() -> list[Example]:
    return [example for document in DOCUMENTS for example in examples(document)]
