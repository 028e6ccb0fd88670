"""The docs site's navigation points at pages that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mkdocs_nav_pages_exist():
    pages = re.findall(r":\s*(\S+\.md)", (ROOT / "mkdocs.yml").read_text())
    assert pages
    for page in pages:
        assert (ROOT / "docs" / page).is_file(), page
