"""The ``ratiolab`` command line."""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from ratiolab.registry import Registry


def _fmt(v: Any) -> str:
    return "required" if v is inspect.Parameter.empty else repr(v)


def registry_table(reg: Registry, title: str, hide: Sequence[str] = ()) -> Table:
    """A rich table of a registry: name, arXiv id, summary, parameters that differ from ``hide``."""
    table = Table(title=title, show_lines=False)
    for col in ("name", "arXiv", "summary", "parameters"):
        table.add_column(col, overflow="fold")
    for e in reg:
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in e.params.items() if k not in hide or k in e.fixed)
        table.add_row(e.name, e.arxiv or "—", e.summary, params)
    return table


def _cmd_list(args: argparse.Namespace) -> int:
    from ratiolab.advantages import ADVANTAGES
    from ratiolab.correction import CORRECTIONS
    from ratiolab.objectives import COMMON, OBJECTIVES

    console = Console()
    if args.what == "objectives":
        console.print(registry_table(OBJECTIVES, "objectives", hide=tuple(COMMON)))
        console.print("every objective also takes: " + ", ".join(f"{k}={v!r}" for k, v in COMMON.items()))
    elif args.what == "advantages":
        console.print(registry_table(ADVANTAGES, "advantage estimators"))
    else:
        console.print(registry_table(CORRECTIONS, "discrepancy corrections"))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ratiolab.showcase import run

    run(Console())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ratiolab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="print a registry as a table")
    p_list.add_argument("what", choices=["objectives", "advantages", "corrections"])
    p_list.set_defaults(fn=_cmd_list)
    p_demo = sub.add_parser("demo", help="the main showcase on the embedded defaults")
    p_demo.set_defaults(fn=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.fn(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
