"""``docs/objectives.md``: the objective, preference-loss, advantage and correction registries as markdown.

The page is generated, never edited by hand; ``tests/test_docs.py`` fails when it differs from
what the registries render. Regenerate it from the repository root with

    PYTHONPATH=src python -m ratiolab.report.catalogue

(``--check`` exits with status 1 instead of writing when the file is out of date).
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Sequence
from pathlib import Path

from ratiolab.advantages import ADVANTAGES
from ratiolab.correction import CORRECTIONS
from ratiolab.flow import FLOW_LOSSES
from ratiolab.objectives import COMMON, OBJECTIVES
from ratiolab.preference import PREFERENCE_LOSSES
from ratiolab.registry import Entry, Registry

#: Where the generated page lives, relative to the repository root.
DEFAULT_PATH = Path("docs/objectives.md")
#: The command that rewrites it (quoted in the page and in the test's failure message).
REGENERATE = "PYTHONPATH=src python -m ratiolab.report.catalogue"


def _cell(text: str) -> str:
    """A markdown table cell: pipes escaped, no line breaks."""
    return " ".join(text.split()).replace("|", "\\|")


def _columns(entry: Entry, hide: Sequence[str]) -> tuple[str, str]:
    """(required inputs, ``k=v`` defaults) of ``entry``; a hidden (registry-wide) default only where pinned."""
    params = entry.params
    required = [f"`{k}`" for k, v in params.items() if v is inspect.Parameter.empty]
    required += [f"`inputs.{k}`" for k in entry.requires]
    defaults = [f"`{k}={v!r}`" for k, v in entry.defaults.items() if k not in hide or k in entry.fixed]
    return ", ".join(required) or "—", ", ".join(defaults) or "—"


def render_registry(reg: Registry, title: str, hide: Sequence[str] = ()) -> str:
    """One section: name, arXiv id, summary, defining module, required inputs and defaults of every entry."""
    lines = [
        f"## {title}",
        "",
        f"{len(reg.names())} entries.",
        "",
        "| name | arXiv | summary | module | required inputs | defaults |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for e in reg:
        module = e.fn.__module__.removeprefix("ratiolab.")
        required, defaults = _columns(e, hide)
        summary = _cell(e.summary) + (" (experimental)" if e.experimental else "")
        lines.append(
            f"| `{e.name}` | {e.arxiv or '—'} | {summary} | `{module}` | {required} | {_cell(defaults)} |"
        )
    return "\n".join(lines) + "\n"


def render() -> str:
    """The whole of ``docs/objectives.md`` from the current registries."""
    common = ", ".join(f"`{k}={v!r}`" for k, v in COMMON.items())
    head = "\n".join([
        "# Registered objectives, preference losses, flow losses, advantage estimators and corrections",
        "",
        f"Generated from the registries by `{REGENERATE}`; do not edit by hand.",
        "The same tables print with `ratiolab list objectives|preference|advantages|corrections`.",
        "Formulas, defaults and their sources are in the method notes under [methods/](methods/);",
        "the metric names an entry logs are in [metrics.md](metrics.md).",
        "Required inputs are tensors (or parameters) without a default, and the optional batch fields",
        "(`inputs.*`) the method cannot run without. An experimental entry has an inferred form: a run",
        "must opt in with `algo.experimental=true`.",
        "",
    ])
    sections = [
        render_registry(OBJECTIVES, "Objectives", hide=tuple(COMMON))
        + f"\nEvery objective also takes {common} (see [design.md](design.md) §3).\n",
        render_registry(PREFERENCE_LOSSES, "Preference losses")
        + "\nA preference loss takes a `PreferenceBatch` of response pairs (`ratiolab.preference`).\n",
        render_registry(FLOW_LOSSES, "Flow losses")
        + "\nA flow loss takes `[B]` per-sample denoising errors by keyword (`ratiolab.flow.compute`).\n",
        render_registry(ADVANTAGES, "Advantage estimators"),
        render_registry(CORRECTIONS, "Discrepancy corrections")
        + "\nA correction acts on `w_disc` only; choose one with the objective parameter `correction`.\n",
    ]
    return head + "\n" + "\n".join(sections)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ratiolab.report.catalogue", description="write the registries as markdown (docs/objectives.md)"
    )
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH, help=f"output (default {DEFAULT_PATH})")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs instead of writing it")
    args = parser.parse_args(argv)
    text = render()
    current = args.path.read_text(encoding="utf-8") if args.path.exists() else None
    if args.check:
        if current != text:
            print(f"{args.path} is out of date; regenerate it with: {REGENERATE}", file=sys.stderr)
            return 1
        return 0
    if current != text:
        args.path.parent.mkdir(parents=True, exist_ok=True)
        args.path.write_text(text, encoding="utf-8")
        print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
