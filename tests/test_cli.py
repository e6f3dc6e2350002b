"""The command line: ``ratiolab list objectives`` prints the registry."""

from __future__ import annotations

import pytest

from ratiolab.cli import main
from ratiolab.objectives import names


@pytest.mark.parametrize("what", ["objectives", "advantages", "corrections"])
def test_list_prints_every_entry(what: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", what]) == 0
    out = capsys.readouterr().out
    expected = {"objectives": names(), "advantages": ["gae", "grpo", "remax"], "corrections": ["truncate", "mask"]}
    for name in expected[what]:
        assert name in out
    if what == "objectives":
        assert "2507.18071" in out and "aggregation" in out


def test_unknown_list_target_is_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["list", "papers"])
    assert "invalid choice" in capsys.readouterr().err
