"""Defaults that work for a new user, and outputs others can use (issue 17 item 4): the default learning rate
learns, pre-training shows progress, run folders are named, checkpoints are Hugging Face folders (tied
embeddings included) that ``export`` copies out, task parameters reach every command, ``report`` knows the
kind of run, ``--help`` and ``config --show`` show the defaults, and tables are not folded off a terminal."""

from __future__ import annotations

import io
import json
import re
import tomllib
from pathlib import Path

import pytest
import torch
import yaml
from rich.console import Console
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

from ratiolab import cli
from ratiolab.cli import main
from ratiolab.config import ConfigError, load_yaml, override
from ratiolab.gym import GymTrainConfig, PQNConfig
from ratiolab.gym import train as gym_train
from ratiolab.learner import TrainConfig, train
from ratiolab.objectives import OBJECTIVES
from ratiolab.policies import build_policy, build_tokenizer
from ratiolab.runs import CheckpointError, RunDir, default_run_dir, load_weights
from ratiolab.tasks import JsonlTask, Problem, completion_tokens

ROOT = Path(__file__).resolve().parents[1]
#: A tiny run: 2 prompts x 2 samples, 2 test problems; with --model no pre-training.
TINY = ["--set", "algo.prompts_per_step=2", "--set", "algo.samples_per_prompt=2", "--set", "algo.minibatches=1",
        "--set", "sampling.max_new_tokens=4", "--set", "eval_size=2", "--set", "eval_every=1",
        "--set", "checkpoint_every=1", "--set", "threads=1"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``llama``: the tiny preset, freshly initialised; ``gpt2``: a tiny GPT-2 with tied embeddings (its
    default), built from a config; both with the character tokenizer."""
    f = tmp_path_factory.mktemp("models")
    model, tok = build_policy("tiny")
    model.save_pretrained(f / "llama")
    tok.save_pretrained(f / "llama")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2, n_positions=64,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    gpt2 = GPT2LMHeadModel(config)
    assert config.tie_word_embeddings and gpt2.lm_head.weight.data_ptr() == gpt2.transformer.wte.weight.data_ptr()
    gpt2.save_pretrained(f / "gpt2")
    tok.save_pretrained(f / "gpt2")
    return f


# (a) the default learning rate learns -----------------------------------------------------------------------
@pytest.mark.slow
def test_the_default_run_does_not_collapse_the_pretrained_policy(tmp_path: Path) -> None:
    """The default config for 5 steps (~70 s on an idle core, pre-training included). Measured (``ratiolab train
    --steps 10 --seed S``): at the old lr 1e-3 held-out accuracy fell 36.5 % -> 7.5 % (seed 0) and 50.5 % -> 8.5 %
    (seed 1); at lr 1e-4 with 10 warmup steps 36.5 % -> 37.0 % and 50.5 % -> 54.5 %."""
    cfg = override(TrainConfig(), ["steps=5", "threads=1", f"run_dir={tmp_path / 'run'}",
                                   f"policy.cache_dir={tmp_path / 'cache'}"])
    result = train(cfg, log=lambda _: None)
    assert result.final_accuracy >= result.base_accuracy - 0.05, (result.base_accuracy, result.final_accuracy)


# (b) pre-training shows progress ----------------------------------------------------------------------------
def test_pretraining_prints_progress_off_a_terminal_and_a_bar_on_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["pretrain", "--steps", "8", "--out", str(tmp_path / "a"), "--set", "task.params.level=1"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("pre-training:")]
    # steps 1 and each quarter of 8: 2, 4, 6, 8
    assert [re.match(r"pre-training: step (\d+)/8, loss \d+\.\d{3}, \d+ s", line)[1] for line in lines] == \
        ["1", "2", "4", "6", "8"]  # type: ignore[index]
    terminal = Console(file=io.StringIO(), force_terminal=True, width=100)
    monkeypatch.setattr(cli, "errors", terminal)
    monkeypatch.setattr(cli, "_width", lambda stream: 100)
    with cli.pretrain_progress(4) as step:
        for i in range(1, 5):
            step(i, 0.5)
    assert "pre-training" in terminal.file.getvalue() and "4/4" in terminal.file.getvalue()  # type: ignore[attr-defined]


# (c) (d) (e) named run folders, Hugging Face checkpoints with tied embeddings, export, eval ---------------------
def test_tied_gpt2_trains_resumes_exports_and_evaluates_from_the_cli(
    models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--model", str(models / "gpt2"), "--steps", "2", *TINY]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert re.fullmatch(r"grpo-arithmetic-\d{8}-\d{6}", run.name)
    assert main(["train", "--resume", str(run), "--steps", "3"]) == 0  # the tied weights load back
    ckpt = RunDir.open(run).latest()
    assert ckpt is not None and ckpt.step == 3 and ckpt.is_model
    loaded = AutoModelForCausalLM.from_pretrained(ckpt.folder)
    assert loaded.lm_head.weight.data_ptr() == loaded.transformer.wte.weight.data_ptr()
    assert torch.equal(loaded.transformer.wte.weight, ckpt.weights["transformer.wte.weight"])
    assert main(["export", str(run), "--out", "exported"]) == 0
    assert sorted(p.name for p in (tmp_path / "exported").iterdir()) == [
        "config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "exported")
    assert all(torch.equal(a, b) for a, b in zip(exported.state_dict().values(), loaded.state_dict().values(),
                                                 strict=True))
    assert main(["export", str(run), "--out", "exported"]) == 2  # an existing folder is not overwritten
    assert "exists and is not an empty folder" in capsys.readouterr().err
    assert main(["eval", "--model", str(ckpt.folder), "--n", "2"]) == 0
    assert "held-out accuracy of" in capsys.readouterr().out


def test_a_tied_model_checkpoint_round_trips_and_is_checked(models: Path, tmp_path: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(models / "gpt2")
    run = RunDir.create(tmp_path / "run", {"a": 1})
    run.save(1, model, {"step": 1}, tokenizer=build_tokenizer())
    ckpt = run.latest()
    assert ckpt is not None and "lm_head.weight" not in ckpt.weights  # stored once, as the input embedding
    fresh = GPT2LMHeadModel(model.config)
    load_weights(fresh, ckpt.weights)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values(), strict=True))
    with pytest.raises(CheckpointError, match=r"missing \['transformer.h.0.attn.c_attn.weight'\]"):
        load_weights(fresh, {k: v for k, v in ckpt.weights.items() if k != "transformer.h.0.attn.c_attn.weight"})
    manifest = json.loads((ckpt.folder / "manifest.json").read_text())["files"]
    assert {"config.json", "model.safetensors", "tokenizer.json", "state.json", "state.safetensors"} <= set(manifest)
    (ckpt.folder / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"config\.json does not match its checksum"):
        run.load(1)


def test_default_run_dir_is_timestamped_and_new(tmp_path: Path) -> None:
    first = Path(default_run_dir("grpo", "arithmetic", root=str(tmp_path)))
    assert re.fullmatch(r"grpo-arithmetic-\d{8}-\d{6}", first.name)
    first.mkdir()
    second = Path(default_run_dir("grpo", "arithmetic", root=str(tmp_path)))
    assert second != first and not second.exists()
    assert TrainConfig().run_dir is None


# (f) task parameters ----------------------------------------------------------------------------------------
def test_another_task_starts_from_its_own_parameters(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("task:\n  name: arithmetic\n  params: {level: 3}\n")
    for task in ("countdown", "guess"):
        cfg = cli._train_config(cli.build_parser().parse_args(["train", "--config", str(tmp_path / "c.yaml"),
                                                               "--task", task]))
        assert (cfg.task.name, cfg.task.params) == (task, {})
        cfg.validate()
    same = cli._train_config(cli.build_parser().parse_args(["train", "--config", str(tmp_path / "c.yaml"),
                                                            "--task", "arithmetic"]))
    assert same.task.params == {"level": 3}


def test_eval_takes_task_parameters(models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"question": f"{i}+1=", "answer": f"#### {i + 1}"} for i in range(30)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["eval", "--model", str(models / "llama"), "--task", "jsonl", "--n", "2",
                 "--set", f"task.params={{path: {tmp_path / 'd.jsonl'}}}"]) == 0
    assert "on jsonl" in capsys.readouterr().out
    assert main(["eval", "--model", str(models / "llama"), "--n", "2", "--set", "task.params.level=9"]) == 2
    assert "level=9 is not defined" in capsys.readouterr().err
    assert main(["eval", "--model", str(models / "llama"), "--n", "2", "--set", "algo.lr=1"]) == 2
    assert "takes task parameters only" in capsys.readouterr().err


# (g) datasets, the jsonl answer budget ----------------------------------------------------------------------
def test_datasets_is_a_runtime_dependency() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(re.match(r"datasets\b", d) for d in deps)


def test_jsonl_answers_longer_than_max_new_tokens_are_refused(models: Path, tmp_path: Path) -> None:
    rows = [{"question": f"What is {i} plus one?", "answer": f"{i} plus one is {i + 1}.\n#### {i + 1}"}
            for i in range(30)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = JsonlTask(tmp_path / "d.jsonl")
    tok = build_tokenizer()
    # the character tokenizer: "29 plus one is 30.\n#### 30" is 26 characters, + 1 for EOS
    assert completion_tokens(task, task.problems["train"] + task.problems["test"], tok) == 27
    assert completion_tokens(task, [Problem("q", "7", {"solution": "#### 7"})], tok) == 7
    cfg = override(TrainConfig(), [*TINY[1::2], "steps=1", "sampling.max_new_tokens=8", "task.name=jsonl",
                                   f"task.params={{path: {tmp_path / 'd.jsonl'}}}", f"policy.model={models / 'llama'}",
                                   f"run_dir={tmp_path / 'run'}"])
    with pytest.raises(ConfigError, match=r"sampling\.max_new_tokens = 8 cuts the answers of task jsonl .* "
                                          r"--set sampling\.max_new_tokens=2\d"):
        train(cfg, log=lambda _: None)
    assert not (tmp_path / "run").exists()


# (h) report knows the kind of run ---------------------------------------------------------------------------
def test_report_of_a_gym_run_keeps_its_panels_and_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = GymTrainConfig(algo="pqn", total_steps=128, eval_episodes=1,
                         pqn=PQNConfig(num_envs=4, num_steps=32, num_minibatches=2, update_epochs=1))
    gym_train(cfg, tmp_path / "run")
    page = (tmp_path / "run" / "report.html").read_text()
    plots = sorted(p.name for p in (tmp_path / "run" / "plots").iterdir())
    assert main(["report", str(tmp_path / "run")]) == 0
    again = (tmp_path / "run" / "report.html").read_text()
    assert "deterministic eval return" in again and "<th>env</th>" in again and "held-out accuracy" not in again
    assert sorted(p.name for p in (tmp_path / "run" / "plots").iterdir()) == plots
    assert again == page


def test_report_of_an_unfinished_run_uses_its_kind(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "lm", {"task": {"name": "arithmetic"}})
    for step in range(3):
        run.log({"step": step, "reward/mean": 0.1 * step, "eval/accuracy": 0.5})
    assert main(["report", str(run.path)]) == 0
    page = (run.path / "report.html").read_text()
    assert "alt=\"Training reward\"" in page and "last logged step</th><td>2<" in page


# (i) license and typing marker ------------------------------------------------------------------------------
def test_license_and_py_typed_ship() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"]["text"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    assert (ROOT / "src" / "ratiolab" / "py.typed").is_file()
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["ratiolab"]


# (j) nested keys --------------------------------------------------------------------------------------------
def test_set_reaches_nested_dict_parameters() -> None:
    cfg = override(TrainConfig(), ["algo.objective_params.clip_low=0.1", "task.params.level=3",
                                   "algo.objective_params.correction.kind=tis", "algo.objective_params.clip_low=0.15"])
    assert cfg.algo.objective_params == {"clip_low": 0.15, "correction": {"kind": "tis"}}
    assert cfg.task.params == {"level": 3}
    with pytest.raises(ConfigError, match=r"task\.params\.level holds 3, not a mapping"):
        override(cfg, ["task.params.level.x=1"])
    with pytest.raises(ConfigError, match=r"algo\.lr is not a config section"):
        override(cfg, ["algo.lr.x=1"])
    with pytest.raises(ConfigError, match=r"algo\.nope is not a config section; valid keys here: \['adam_beta2', "
                       r"'adam_eps', 'advantage'"):
        override(cfg, ["algo.nope.x=1"])


# (k) defaults in --help, config --show ----------------------------------------------------------------------
def test_help_shows_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, shown in ((["eval", "--help"], ["(default: 200)", "(default: arithmetic)"]),
                        (["train", "--help"], [f"default {TrainConfig().algo.objective})", "(default 40)"]),
                        (["sweep", "--help"], ["(default: 0,2,8)"])):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 0
        out = " ".join(capsys.readouterr().out.split())
        assert all(s in out for s in shown), (argv, out)


def test_config_show_round_trips_through_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--show"]) == 0
    (tmp_path / "c.yaml").write_text(capsys.readouterr().out)
    assert load_yaml(TrainConfig, tmp_path / "c.yaml") == TrainConfig()
    assert main(["config", "--show", "--config", str(tmp_path / "c.yaml"), "--set", "algo.lr=3e-4"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["algo"]["lr"] == 3e-4


# (l) no folding off a terminal ------------------------------------------------------------------------------
def test_tables_are_not_folded_at_80_columns_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "objectives"]) == 0
    lines = capsys.readouterr().out.splitlines()
    long = [e for e in OBJECTIVES if len(e.summary) > 60]
    assert long and all(any(e.summary in line for line in lines) for e in long)
    assert cli._width(io.StringIO()) == 1000
