"""Refresh the vendored GraphiQL assets: ``python -m api.graphiql.fetch`` (needs npm).

Takes the versions that the installed strawberry's own GraphiQL page loads from its CDN,
fetches those exact packages from the npm registry (``npm pack``), checks each file
against the Subresource Integrity hash strawberry's page gives for it, and writes the
files into static/, their licences into licenses/ and what was fetched into assets.json.
After a strawberry upgrade: run it, then ``tests/api/test_graphiql_offline.py``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from strawberry.http.ides import get_graphql_ide_html

from api.graphiql import LICENSES, MANIFEST, STATIC

# What the service serves under /graphiql/, from which package and file. strawberry's page
# also loads js-cookie, only to forward Django's CSRF cookie: this service has none.
ASSETS = {
    "react.production.min.js": ("react", "umd/react.production.min.js"),
    "react-dom.production.min.js": ("react-dom", "umd/react-dom.production.min.js"),
    "graphiql.min.js": ("graphiql", "graphiql.min.js"),
    "graphiql.min.css": ("graphiql", "graphiql.min.css"),
    "plugin-explorer.umd.js": ("@graphiql/plugin-explorer", "dist/index.umd.js"),
    "plugin-explorer.css": ("@graphiql/plugin-explorer", "dist/style.css"),
}
# The explorer plugin's bundle includes graphiql-explorer; its own package has no LICENSE
# file (MIT, the graphiql repository's licence, as in the graphiql package).
BUNDLED = {"@graphiql/plugin-explorer": "graphiql-explorer"}
LICENSE_FROM = {"@graphiql/plugin-explorer": "graphiql"}

_CDN = re.compile(
    r'"https://unpkg\.com/(?P<package>(?:@[^/"]+/)?[^@/"]+)@(?P<version>[^/"]+)/(?P<path>[^"]+)"'
    r'\s+integrity="(?P<integrity>[^"]+)"'
)


def strawberry_assets() -> dict[tuple[str, str], tuple[str, str]]:
    """(package, path) -> (version, integrity), as strawberry's GraphiQL page names them."""
    page = get_graphql_ide_html("graphiql")
    return {(m["package"], m["path"]): (m["version"], m["integrity"]) for m in _CDN.finditer(page)}


def _unpack(spec: str, into: Path) -> Path:
    """``npm pack spec`` into a folder; returns the package's folder."""
    output = subprocess.run(
        ["npm", "pack", "--json", spec], cwd=into, check=True, capture_output=True, text=True
    ).stdout
    filename: str = json.loads(output)[0]["filename"]
    tarball = into / filename
    folder = into / tarball.name.removesuffix(".tgz")
    with tarfile.open(tarball) as archive:
        archive.extractall(folder, filter="data")
    return folder / "package"


def _license_name(package: str) -> str:
    return package.removeprefix("@").replace("/", "-") + ".LICENSE"


def _sri(data: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


def refresh() -> dict[str, dict[str, str]]:
    known = strawberry_assets()
    missing = [f"{p}/{f}" for p, f in ASSETS.values() if (p, f) not in known]
    if missing:
        sys.exit(
            f"strawberry's GraphiQL page no longer loads {', '.join(missing)} from its CDN: "
            "update ASSETS here and api/graphiql/graphiql.html to what it loads now"
        )
    versions = {package: known[(package, path)][0] for package, path in ASSETS.values()}
    manifest: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        unpacked = {p: _unpack(f"{p}@{v}", Path(scratch)) for p, v in versions.items()}
        for name, (package, path) in ASSETS.items():
            data = (unpacked[package] / path).read_bytes()
            integrity = known[(package, path)][1]
            if _sri(data) != integrity:
                sys.exit(f"{package}@{versions[package]}/{path} does not match {integrity}")
            (STATIC / name).write_bytes(data)
            manifest[name] = {
                "package": package,
                "version": versions[package],
                "file": path,
                "integrity": integrity,
            }
        LICENSES.mkdir(exist_ok=True)
        for package in unpacked:
            source = unpacked[LICENSE_FROM.get(package, package)] / "LICENSE"
            (LICENSES / _license_name(package)).write_bytes(source.read_bytes())
        for package, bundled in BUNDLED.items():
            wanted = json.loads((unpacked[package] / "package.json").read_text())
            folder = _unpack(f"{bundled}@{wanted['dependencies'][bundled]}", Path(scratch))
            (LICENSES / _license_name(bundled)).write_bytes((folder / "LICENSE").read_bytes())
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main() -> None:
    for name, asset in refresh().items():
        size = (STATIC / name).stat().st_size
        print(f"{name:30} {asset['package']}@{asset['version']} {asset['file']} ({size:,} B)")


if __name__ == "__main__":
    main()
