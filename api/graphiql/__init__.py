"""GraphiQL at /graphql, served whole by the service: no CDN, so it works air-gapped.

strawberry's own GraphiQL page loads React, GraphiQL and its explorer plugin from a public
CDN, and stays on "Loading..." where that cannot be reached. This package ships those files
(static/, served at /graphiql/ by api/app.py) and a page that loads them from there
(graphiql.html and static/start.js, derived from strawberry's: the query, variables and
headers from the URL, the headers editor, the explorer plugin; no subscriptions).
favicon.svg is the service's icon, served at /favicon.ico.

The files are byte for byte those strawberry 0.341's page names, with its integrity hashes:
react and react-dom 18.2.0 (UMD builds), graphiql 3.8.3 (UMD build and CSS) and
@graphiql/plugin-explorer 1.0.2 (UMD build and CSS). assets.json lists them; licenses/ holds
their licences. Refresh them from the npm registry, to what the installed strawberry's page
names, with ``python -m api.graphiql.fetch`` (api/graphiql/fetch.py; needs npm).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

HERE = Path(__file__).parent
STATIC = HERE / "static"  # served at /graphiql/; graphiql.html names its files relative
LICENSES = HERE / "licenses"
MANIFEST = HERE / "assets.json"
FAVICON = HERE / "favicon.svg"

# The page runs only what the service serves: its script is a file, and no other origin is
# allowed for anything, so a page edited to name a CDN again fails in the browser too.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",  # the page's <style>; React's style attributes
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "object-src 'none'",
    )
)


@cache
def page_html() -> str:
    """The GraphiQL page, read once."""
    return (HERE / "graphiql.html").read_text(encoding="utf-8")
