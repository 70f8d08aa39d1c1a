"""The rule for collection and item ids, which become URL path segments and file names.

Its own module (no third-party imports) so that looking a collection up by name does not import the
ingest pipeline (rasterio) only to validate a string.
"""

from __future__ import annotations

import re

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


def valid_name(name: str | None) -> bool:
    """Letters, digits, '-' and '_', starting with a letter or digit, at most 128 characters."""
    return bool(NAME_RE.match(name or ""))
