"""The file GPUINV_OIDC_ISSUERS=@FILE names, as `gpuinv tenant create --issuers-file` adds a
tenant's realm to it: read and checked before anything is created, written whole and
atomically (a reader, such as a service starting, sees the old array or the new, never
half), and put back if the tenant's commit then fails."""

from __future__ import annotations

import json
import os
import secrets
import stat
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from api.domain.errors import bad_input
from api.domain.identity import IssuerConfigError, add_issuer


@dataclass
class IssuersFile:
    """A GPUINV_OIDC_ISSUERS=@FILE file, read and checked with the entry added; written
    whole by ``write`` (atomically: a reader sees the old array or the new, never half)."""

    path: Path
    before: str | None  # its text as read (None: there was no file)
    after: str

    @classmethod
    def read(cls, path: Path, entry: dict[str, Any]) -> IssuersFile:
        if not path.parent.is_dir():
            raise bad_input(
                f"--issuers-file: the directory {path.parent} does not exist",
                field="--issuers-file",
            )
        before = read_text(path)
        entries: Any = []
        if before is not None:
            try:
                entries = json.loads(before)
            except json.JSONDecodeError as exc:
                raise bad_input(
                    f"{path}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                    "an issuers file is a JSON array of issuer objects",
                    field="--issuers-file",
                ) from None
        try:
            added = add_issuer(entries, entry, str(path))
        except IssuerConfigError as exc:
            raise bad_input(str(exc), field="--issuers-file") from None
        return cls(path, before, json.dumps(added, indent=2) + "\n")

    def write(self) -> None:
        if read_text(self.path) != self.before:  # another writer since it was checked
            raise click.ClickException(
                f"{self.path} changed while the tenant was being created; nothing was "
                "created: run the command again"
            )
        replace_whole(self.path, self.after)

    def restore(self) -> None:
        if self.before is None:
            with suppress(FileNotFoundError):
                Path(os.path.realpath(self.path)).unlink()
        else:
            replace_whole(self.path, self.before)


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise bad_input(f"{path}: not UTF-8 text", field="--issuers-file") from None
    except OSError as exc:
        raise bad_input(f"cannot read {path}: {exc.strerror}", field="--issuers-file") from None


def replace_whole(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and move it over ``path`` in one
    step. A symbolic link stays one (its target is replaced); the file keeps its mode."""
    target = Path(os.path.realpath(path))
    scratch = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = None
    try:
        descriptor = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        if mode is not None:
            os.chmod(scratch, mode)
        os.replace(scratch, target)
    except OSError as exc:
        with suppress(OSError):
            scratch.unlink()
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from None
