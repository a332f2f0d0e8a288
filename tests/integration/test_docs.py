"""The Python code blocks of the README and of docs/ run, as a reader would run them: each
page's blocks in order, in one namespace of their own, against the suite's Ray, in a
namespace and data folder of their own. A block right after ``<!-- not run: why -->`` is
skipped, and the comment says why (it needs a cluster, say)."""

from __future__ import annotations

import re
import types
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT, kill_namespace

pytestmark = pytest.mark.ray

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?P<mark><!-- not run: (?P<why>.+?) -->\n)?(?P<indent>[ \t]*)```python\n"
                   r"(?P<code>.*?)\n(?P=indent)```", re.S)


def blocks(page: Path) -> list[tuple[int, str, str | None]]:
    """(line, code, why it is not run) of each Python block of ``page``."""
    text = page.read_text()
    out = []
    for m in BLOCK.finditer(text):
        indent = m.group("indent")
        code = "\n".join(line.removeprefix(indent) for line in m.group("code").split("\n"))
        out.append((text.count("\n", 0, m.start("code")) + 1, code, m.group("why")))
    return out


def test_every_page_with_python_says_why_a_block_is_not_run():
    for page in PAGES:
        for line, _, why in blocks(page):
            assert why is None or len(why) > 10, f"{page.name}:{line}: say why it is not run"


@pytest.mark.parametrize("page", [p for p in PAGES if any(why is None for _, _, why in
                                                          blocks(p))], ids=lambda p: p.name)
def test_the_pages_python_blocks_run(page, ray_session, tmp_path, monkeypatch):
    namespace = f"docs-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("SAGA_ACTORS_NAMESPACE", namespace)
    monkeypatch.setenv("SAGA_ACTORS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    # a module nobody can import: Ray ships what the blocks define by value, as from a notebook
    module = types.ModuleType(f"docs_{page.stem.lower()}_{uuid.uuid4().hex[:6]}")
    try:
        for line, code, why in blocks(page):
            if why is not None:
                continue
            try:
                exec(compile(code, f"{page.name}:{line}", "exec"), module.__dict__)
            except Exception as exc:
                raise AssertionError(f"the block at {page.name}:{line} failed: "
                                     f"{type(exc).__name__}: {exc}") from exc
    finally:
        runtime = module.__dict__.get("rt")
        if runtime is not None:
            runtime.close()
        kill_namespace(namespace)
