"""Under CI (``CI=true``) what a test needs must be there: a PostgreSQL, NetBox, Chromium or
``terraform`` that is missing fails the run there, and skips the tests (loudly) elsewhere."""

from __future__ import annotations

import os

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
