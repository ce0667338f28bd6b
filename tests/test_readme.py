"""The README's snippets run as written, and the links of the README and docs/ resolve.

Every fenced ```python block of README.md and of the docs/ pages runs in a fresh
interpreter (a subprocess, in a temporary working directory), and must exit 0. Each block
states its own checks as ``assert`` statements (shapes, counts, R-hat), so a block without
one fails here too: a snippet that merely runs proves little. A block meant as illustration
only is fenced ```python no-run and is skipped; keep those rare.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"

FENCE = re.compile(r"^```(\w*)([^\n]*)\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def code_blocks(text: str) -> list[tuple[int, str, str, str]]:
    """``(line, language, info, code)`` for every fenced block of ``text``."""
    return [(text.count("\n", 0, m.start()) + 1, m.group(1), m.group(2).strip(), m.group(3))
            for m in FENCE.finditer(text)]


def python_blocks(page: Path) -> list[tuple[int, str]]:
    """The runnable Python blocks of ``page``: ``(line, code)``."""
    return [(line, code) for line, lang, info, code in code_blocks(page.read_text("utf-8"))
            if lang == "python" and "no-run" not in info.split()]


SNIPPETS = [pytest.param(page, line, code, id=f"{page.name}:{line}")
            for page in (README, *sorted(DOCS.glob("*.md"))) for line, code in python_blocks(page)]


def test_code_blocks_are_found_and_no_run_marks_are_rare():
    blocks = code_blocks(README.read_text("utf-8"))
    python = [b for b in blocks if b[1] == "python"]
    skipped = [b for b in python if "no-run" in b[2].split()]
    assert len(python) >= 4, "expected the quick start, optim, k-means and deep-net snippets"
    assert len(skipped) <= 1, f"too many illustrative-only blocks: lines {[b[0] for b in skipped]}"


def test_ci_finds_the_test_command_in_a_bash_block():
    """``.ci/run`` runs the first README line containing `.venv/bin/pytest`: it must be the
    second top command, a complete setup-and-test line."""
    text = README.read_text("utf-8")
    line = next(x for x in text.splitlines() if ".venv/bin/pytest" in x)
    assert line.startswith("python3 -m venv .venv && .venv/bin/pip install -e \".[test")
    assert line.rstrip().endswith(".venv/bin/pytest")
    bash = [code for _, lang, _, code in code_blocks(text) if lang == "bash"]
    assert bash[1].strip() == line.strip() and "lesample run --quick" in bash[0]


@pytest.mark.slow
@pytest.mark.parametrize("page,line,code", SNIPPETS)
def test_snippet_runs(page, line, code, tmp_path):
    assert re.search(r"^\s*assert ", code, re.M), (
        f"{page.name} line {line}: the snippet states no check (add an assert)")
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    # A warning raised at the snippet's own lines (a deprecated name, a convergence warning
    # of `sample`) fails it: a guide's examples run cleanly.
    done = subprocess.run([sys.executable, "-W", "error::Warning:__main__", "-c", code],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (
        f"{page.name} line {line} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of the headings of a Markdown page (code blocks left out)."""
    text = FENCE.sub("", page.read_text("utf-8"))
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.*)$", text, re.M)}


@pytest.mark.parametrize("page", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name)
def test_relative_links_resolve(page):
    missing = []
    for target in LINK.findall(page.read_text("utf-8")):
        if re.match(r"[a-z]+:", target):
            continue
        name, _, anchor = target.partition("#")
        path = (page.parent / name).resolve() if name else page
        if not path.exists() or (anchor and path.suffix == ".md"
                                 and anchor not in anchors(path)):
            missing.append(target)
    assert not missing, f"{page.name}: links to missing files or headings {missing}"


def test_docs_pages_exist_and_no_shared_design_citations():
    """The pages other modules cite exist, and nothing cites the design file outside the
    repository (a clone or an installed package does not have it)."""
    for name in ("index", "conventions", "gaussian", "samplers", "optimizers", "kmeans",
                 "deepnets", "architecture", "results"):
        assert (DOCS / f"{name}.md").is_file(), name
    cited = [str(p.relative_to(ROOT)) for folder in ("lesample", "studies", "tests", "benchmarks")
             for p in (ROOT / folder).rglob("*.py")
             if "DESIGN" + ".md" in p.read_text("utf-8")]
    cited += ["README.md"] * ("DESIGN" + ".md" in README.read_text("utf-8"))
    assert not cited, f"cite docs/ pages instead of the shared design file in {cited}"


def test_api_tour_names_exist():
    """Every name the README's API tour gives for a module is an attribute of it (the tour
    goes stale when a name is renamed). Exceptions: fields of the target that
    ``local_entropy_target`` returns, and the command's own name."""
    text = README.read_text("utf-8")
    tour = text[text.index("## A tour of the API"):text.index("Samplers follow BlackJAX")]
    not_attributes = {"H", "grad_H", "lesample"}
    missing = []
    for row in tour.splitlines():
        if not row.startswith("| `lesample"):
            continue
        cells = row.split("|")
        names = re.findall(r"`(lesample\.[\w.]+)`", cells[1])
        modules = [importlib.import_module(m) for m in names]
        for name in re.findall(r"`([A-Za-z_]\w*)`", cells[2]):
            if name not in not_attributes and not any(hasattr(m, name) for m in modules):
                missing.append(f"{cells[1].strip()}: {name}")
    assert not missing, f"the README's API tour names what the modules lack: {missing}"
