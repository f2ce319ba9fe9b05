"""The README stays short and every link in it leads somewhere.

Relative links must name a file or folder of the repository and, with a ``#fragment``, a heading
of that Markdown file (GitHub's anchors); external links are checked for form only (tests run
without a network).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from urllib.parse import unquote, urlparse

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_LINES = 250

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.S)
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.M)
AUTOLINK = re.compile(r"<((?:https?|mailto):[^>\s]+)>")
BARE_URL = re.compile(r"(?<![(<\w])(https?://[^\s)>\]`]+)")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$", re.M)


def prose(markdown: str) -> str:
    """The text outside fenced code blocks and code spans, where a link is a link."""
    return CODE_SPAN.sub("", FENCE.sub("", markdown))


def links(markdown: str) -> list[str]:
    text = prose(markdown)
    found = INLINE_LINK.findall(text) + REFERENCE_DEF.findall(text) + AUTOLINK.findall(text)
    # a bare URL that an inline link or autolink already holds is not counted twice
    held = set(found)
    found += [u.rstrip(".,;:") for u in BARE_URL.findall(text) if u.rstrip(".,;:") not in held]
    return found


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a Markdown file's headings (duplicates get -1, -2, ...)."""
    seen: Counter[str] = Counter()
    anchors = set()
    for _, title in HEADING.findall(FENCE.sub("", markdown)):
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)        # a link's text only
        slug = re.sub(r"[^\w\- ]", "", title.replace("`", "").lower()).replace(" ", "-")
        anchors.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    return anchors


def dead_links(markdown_file: Path, root: Path = ROOT) -> list[str]:
    """Every link of ``markdown_file`` that leads nowhere, with the reason."""
    problems = []
    for target in links(markdown_file.read_text(encoding="utf-8")):
        url = urlparse(target)
        if url.scheme:
            if url.scheme not in ("http", "https", "mailto") or (
                    url.scheme != "mailto" and not re.fullmatch(r"[\w.-]+(:\d+)?", url.netloc)):
                problems.append(f"{target}: not a well-formed external link")
            continue
        path_part, _, fragment = target.partition("#")
        path = (markdown_file.parent / unquote(path_part)).resolve() if path_part \
            else markdown_file
        if root.resolve() not in (path, *path.parents):
            problems.append(f"{target}: leads outside the repository")
            continue
        if not path.exists():
            problems.append(f"{target}: no such file or folder")
            continue
        if fragment:
            if path.suffix != ".md" or not path.is_file():
                problems.append(f"{target}: an anchor into a file that is not Markdown")
            elif fragment not in github_anchors(path.read_text(encoding="utf-8")):
                problems.append(f"{target}: no heading with that anchor")
    return problems


def test_the_readme_is_at_most_250_lines():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"README.md has {lines} lines; move detail to docs/"


def test_every_link_in_the_readme_is_alive():
    found = links(README.read_text(encoding="utf-8"))
    assert len(found) >= 10   # the links were found at all, not an empty list passing
    assert dead_links(README) == []


def test_the_checker_finds_dead_links(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# A page\n\n## Part 1: the `method`\n")
    (tmp_path / "outside.md").write_text("")
    page = tmp_path / "README.md"
    page.write_text(
        "# Top\n\n## Two commands\n\n"
        "[ok](docs/page.md) [ok](docs/page.md#part-1-the-method) [ok](#two-commands)\n"
        "![ok](docs/page.md) <https://example.org/x> and https://arxiv.org/abs/2011.02389.\n"
        "[dead](docs/none.md) [dead](docs/page.md#part-2) [dead](#three-commands)\n"
        "[dead](htp:/example.org) ![dead](img/missing.png) [dead](docs/#part-1)\n"
        "`[not a link](nowhere.md)`\n\n```\n[not a link](nowhere.md)\n```\n")
    assert len(links(page.read_text())) == 12
    assert dead_links(page, root=tmp_path) == [
        "docs/none.md: no such file or folder",
        "docs/page.md#part-2: no heading with that anchor",
        "#three-commands: no heading with that anchor",
        "htp:/example.org: not a well-formed external link",
        "img/missing.png: no such file or folder",
        "docs/#part-1: an anchor into a file that is not Markdown"]
    # a link that leaves the repository is dead even where the file exists
    (tmp_path / "docs" / "up.md").write_text("[out](../outside.md)\n")
    assert dead_links(tmp_path / "docs" / "up.md", root=tmp_path / "docs") == [
        "../outside.md: leads outside the repository"]


def test_the_readme_refers_to_no_path_outside_the_repository():
    text = README.read_text(encoding="utf-8")
    assert "../" not in text and "shared/" not in text
