"""The documentation stays true to the code and to itself.

- The reference pages in docs/reference/ are generated (``make docs``); a page
  that differs from what the code generates now fails here, naming the command.
- The metric names' docstrings (the metrics page's source) say the type and
  labels the collectors really register.
- Every relative link in the README, docs/, bench/README.md and the chart's
  README points to a file that exists and, with ``#anchor``, to a heading of it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scripts import docgen

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted(
    [
        ROOT / "README.md",
        ROOT / "bench" / "README.md",
        ROOT / "helm" / "kanaria" / "README.md",
        *(ROOT / "docs").rglob("*.md"),
    ]
)
_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.MULTILINE)
_HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")


def test_reference_pages_are_up_to_date() -> None:
    stale = docgen.stale()
    assert not stale, (
        f"stale generated docs: {', '.join('docs/reference/' + s for s in stale)}; "
        f"run `{docgen.REGENERATE}` (python -m scripts.docgen) and commit the result"
    )


def test_no_page_in_docs_reference_is_hand_written() -> None:
    """docs/reference/ holds only generated pages: a hand-written one would never be checked."""
    present = {p.name for p in (ROOT / "docs" / "reference").glob("*.md")}
    assert present == set(docgen.PAGES)


def test_metric_names_say_what_the_collectors_register() -> None:
    assert docgen.metric_mismatches() == []


def _prose(text: str) -> str:
    """The page without code blocks and code spans, where link syntax is only text."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings (duplicates numbered -1, -2, ...)."""
    seen: dict[str, int] = {}
    out: set[str] = set(_HTML_ANCHOR.findall(page.read_text(encoding="utf-8")))
    for _, heading in _HEADING.findall(_FENCE.sub("", page.read_text(encoding="utf-8"))):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
        slug = docgen.anchor(text)
        n = seen.get(slug, 0)
        out.add(slug if n == 0 else f"{slug}-{n}")
        seen[slug] = n + 1
    return out


def test_anchors_follow_github() -> None:
    page = ROOT / "README.md"
    assert "two-commands" in anchors(page)
    assert docgen.anchor("The real node: what has been proven on real pods") == (
        "the-real-node-what-has-been-proven-on-real-pods"
    )
    assert docgen.anchor("Routing traffic: `kanaria route`") == "routing-traffic-kanaria-route"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_existing_files_and_headings(page: Path) -> None:
    broken = []
    for target in _LINK.findall(_prose(page.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
            continue
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(
                f"{target}: no file {file.relative_to(ROOT) if file.is_relative_to(ROOT) else file}"
            )
            continue
        if not file.is_relative_to(ROOT):
            broken.append(f"{target}: outside the repository")
        elif fragment and file.suffix == ".md" and fragment not in anchors(file):
            broken.append(f"{target}: no heading #{fragment} in {file.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)
