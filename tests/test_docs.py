"""The repository's own documentation: generated registry page, method notes, no outside links."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ratiolab.registry import Registry
from ratiolab.report import catalogue

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: The method notes, each keeping the section numbers the code's docstrings cite.
METHOD_NOTES = ("baselines", "async-correction", "ratio-objectives", "classic", "offline", "ope", "rlhf", "flow")


def test_objectives_page_matches_registries() -> None:
    page = DOCS / "objectives.md"
    assert page.exists(), f"docs/objectives.md is missing; generate it with: {catalogue.REGENERATE}"
    assert page.read_text(encoding="utf-8") == catalogue.render(), (
        f"docs/objectives.md differs from the registries; regenerate it with: {catalogue.REGENERATE}"
    )


def test_render_lists_every_entry_with_inputs_and_defaults() -> None:
    reg = Registry("objective", common={"aggregation": "token-mean"})

    def fn(inputs: object, *, eps: float = 0.2, rewards: object, aggregation: str = "token-mean") -> None: ...

    reg.add("toy", fn, arxiv="1234.56789", summary="a | b")
    reg.add("toy_preset", fn, arxiv="", summary="pinned", fixed={"aggregation": "seq-mean-token-mean"})
    text = catalogue.render_registry(reg, "Toy", hide=("aggregation",))
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    # A registry-wide parameter is shown only where a preset pins it; a pipe in a summary is escaped.
    mod = fn.__module__
    assert rows == [
        f"| `toy` | 1234.56789 | a \\| b | `{mod}` | `rewards` | `eps=0.2` |",
        f"| `toy_preset` | — | pinned | `{mod}` | `rewards` | `aggregation='seq-mean-token-mean'`, `eps=0.2` |",
    ]
    assert "2 entries." in text


def test_check_flag_reports_a_stale_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "objectives.md"
    assert catalogue.main([str(out), "--check"]) == 1
    assert catalogue.REGENERATE in capsys.readouterr().err
    assert catalogue.main([str(out)]) == 0
    assert catalogue.main([str(out), "--check"]) == 0
    out.write_text(out.read_text(encoding="utf-8").replace("| `grpo` |", "| `grpo_renamed` |"), encoding="utf-8")
    assert catalogue.main([str(out), "--check"]) == 1


def _sections(text: str) -> set[str]:
    return set(re.findall(r"^#{2,3} (\d+(?:\.\d+)*)\.? ", text, flags=re.M))


def _citations() -> list[tuple[str, str, str]]:
    """(source file, note name, section) of every ``name.md §N`` citation in src, tests and benchmarks."""
    pattern = re.compile(r"(?<![\w/-])(?:docs/methods/)?(" + "|".join(METHOD_NOTES) + r")\.md §(\d+(?:\.\d+)*)")
    found = []
    for folder in ("src", "tests", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for m in pattern.finditer(path.read_text(encoding="utf-8")):
                found.append((str(path.relative_to(ROOT)), m.group(1), m.group(2)))
    return found


def test_every_cited_section_exists_in_the_method_notes() -> None:
    sections = {name: _sections((DOCS / "methods" / f"{name}.md").read_text(encoding="utf-8")) for name in METHOD_NOTES}
    cites = _citations()
    assert cites, "the citation scan found nothing; the pattern is wrong"
    missing = sorted({f"{name}.md §{sec} (cited in {src})" for src, name, sec in cites if sec not in sections[name]})
    assert not missing, "cited sections without a note: " + "; ".join(missing)


def test_docs_do_not_link_outside_the_repository() -> None:
    files = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md", *sorted(DOCS.rglob("*.md"))]
    bad = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)", text):
            if re.match(r"[a-z]+:", target) or target.startswith("/"):
                bad.append(f"{path.relative_to(ROOT)}: {target}")
                continue
            local = (path.parent / target.split("#")[0]).resolve()
            if not local.is_relative_to(ROOT) or not local.exists():
                bad.append(f"{path.relative_to(ROOT)}: {target}")
        if "shared/" in text:
            bad.append(f"{path.relative_to(ROOT)}: mentions a shared/ folder")
    assert not bad, "links that leave the repository or point nowhere: " + "; ".join(bad)
