"""Every bad input ends in one ``error:`` line naming the field or file and what is valid, exit code 2, and
nothing written: no run directory, no cache, no change to the files it was given.

Each row is ``(id, argv, message)``: ``argv`` runs through ``ratiolab.cli.main`` in an empty working
directory after a small valid base (``LM``, ``GYM``, ``EVAL``) whose flags the row's own flags follow and
override; ``{f}`` is the folder of fixtures (models, YAML files, runs) built once per module.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from ratiolab.cli import main
from ratiolab.config import to_dict
from ratiolab.learner import TrainConfig
from ratiolab.policies import build_policy

LM = ["train", "--model", "{f}/model", "--run-dir", "run", "--set", "steps=1", "--set", "algo.prompts_per_step=2",
      "--set", "algo.samples_per_prompt=2", "--set", "algo.minibatches=1", "--set", "sampling.max_new_tokens=3",
      "--set", "eval_size=2", "--set", "threads=1"]
GYM = ["train", "--env", "CartPole-v1", "--run-dir", "run", "--set", "total_steps=128", "--set", "ppo.num_steps=32",
       "--set", "ppo.num_minibatches=2", "--set", "eval_episodes=1"]
EVAL = ["eval", "--model", "{f}/model", "--n", "2"]

CASES: list[tuple[str, list[str], str]] = [
    # typed fields: finite, right type, known key -------------------------------------------------------
    ("lr-nan", [*LM, "--set", "algo.lr=nan"], r"algo\.lr = 'nan' is not a finite number"),
    ("lr-yaml-nan", [*LM, "--set", "algo.lr=.nan"], r"algo\.lr = nan is not a finite number"),
    ("lr-inf", [*LM, "--set", "algo.lr=inf"], r"algo\.lr = 'inf' is not a finite number"),
    ("lr-overflow", [*LM, "--set", "algo.lr=1e999"], r"algo\.lr = '1e999' is not a finite number"),
    ("lr-negative", [*LM, "--set", "algo.lr=-1"], r"algo\.lr = -1\.0 must be > 0"),
    ("lr-zero", [*LM, "--set", "algo.lr=0"], r"algo\.lr = 0\.0 must be > 0"),
    ("lr-list", [*LM, "--set", "algo.lr=[1, 2]"], r"algo\.lr must be float, got \[1, 2\]"),
    ("lr-word", [*LM, "--set", "algo.lr=fast"], r"algo\.lr must be float, got 'fast'"),
    ("steps-float", [*LM, "--set", "steps=1.5"], r"steps must be int, got 1\.5"),
    ("steps-zero", [*LM, "--set", "steps=0"], r"steps = 0 must be a positive integer"),
    ("steps-flag-zero", [*LM, "--steps", "0"], r"steps = 0 must be a positive integer"),
    ("steps-word", [*LM, "--set", "steps=ten"], r"steps must be int, got 'ten'"),
    ("epochs-bool", [*LM, "--set", "algo.epochs=true"], r"algo\.epochs must be int, got True"),
    ("bool-int", [*LM, "--set", "algo.dynamic_sampling=3"], r"algo\.dynamic_sampling must be bool, got 3"),
    ("unknown-field", [*LM, "--set", "algo.lrr=1"], r"unknown key 'algo\.lrr'; valid keys here: \[.*'lr'"),
    ("unknown-top-field", [*LM, "--set", "learning_rate=1"], r"unknown key 'learning_rate'; valid keys here:"),
    ("not-a-section", [*LM, "--set", "algo.lr.x=1"], r"algo\.lr is not a config section"),
    ("params-not-mapping", [*LM, "--set", "task.params=3"], r"task\.params must be a mapping such as \{key: value\}"),
    ("params-nan", [*LM, "--set", "algo.objective_params={clip_high: .nan}"],
     r"algo\.objective_params\.clip_high = nan is not a number"),
    ("run-dir-empty", [*LM, "--run-dir", ""], r"run_dir is empty; give the folder of the run"),
    ("seed-float", [*LM, "--set", "seed=0.5"], r"seed must be int, got 0\.5"),
    # registry names and enums --------------------------------------------------------------------------
    ("objective", [*LM, "--objective", "nosuch"], r"unknown objective 'nosuch'; valid names: .*grpo"),
    ("advantage", [*LM, "--set", "algo.advantage=nosuch"], r"algo\.advantage: unknown advantage estimator 'nosuch'"),
    ("objective-param", [*LM, "--set", "algo.objective_params={nosuch: 1}"],
     r"objective 'grpo' got unknown parameter\(s\) \['nosuch'\]; valid parameters:"),
    ("correction", [*LM, "--set", "algo.objective_params={correction: nosuch}"], r"correction.*'nosuch'"),
    ("experimental", [*LM, "--objective", "r2vpo"], r"'r2vpo' is experimental.*algo\.experimental=true"),
    ("task", [*LM, "--task", "nosuch"], r"unknown task 'nosuch'; valid tasks: arithmetic"),
    ("task-param", [*LM, "--set", "task.params={nosuch: 1}"], r"task: .*nosuch.*check task\.name and task\.params"),
    ("task-param-glued", [*LM, "--set", "task.params={level:3}"], r"'level:3' reads as one key.*\{level: 3\}"),
    ("preset", [*LM, "--set", "policy.preset=huge"], r"policy\.preset = 'huge' is not one of \['tiny'"),
    ("backend", [*LM, "--set", "sampling.backend=vllm"], r"sampling\.backend = 'vllm' is not one of \['auto'"),
    ("engine-dtype", [*LM, "--set", "sampling.engine_dtype=float16"], r"sampling\.engine_dtype = 'float16' is not"),
    ("kl-placement", [*LM, "--set", "algo.kl_placement=both"], r"algo\.kl_placement = 'both' is not one of"),
    ("kl-kind", [*LM, "--set", "algo.kl_kind=k9"], r"algo\.kl_kind = 'k9' is not one of"),
    ("old-logits", [*LM, "--async", "--set", "async_rl.old_logits=nosuch"],
     r"async_rl\.old_logits = 'nosuch' is not one of \['auto'"),
    ("async-backend", [*LM, "--set", "async_rl.enabled=true", "--set", "async_rl.backend=mpi"],
     r"async_rl\.backend = 'mpi' is not one of"),
    ("log", [*LM, "--log", "tensorbord"],
     r"log = \['tensorbord'\]: 'tensorbord' is not a tracker; valid choices: tensorboard, wandb, mlflow"),
    ("log-twice", [*LM, "--log", "mlflow,tensorboard,mlflow"], r"'mlflow' is listed twice; list each tracker once"),
    ("log-set-string", [*LM, "--set", "log=tensorboard"], r"log must be a list, got 'tensorboard'"),
    ("gym-log", [*GYM, "--log", "tensorboard,wandbb"], r"'wandbb' is not a tracker; valid choices: tensorboard, "),
    # ranges --------------------------------------------------------------------------------------------
    ("top-p-zero", [*LM, "--set", "sampling.top_p=0"], r"sampling\.top_p = 0\.0 must be in \(0, 1\]"),
    ("top-p-big", [*LM, "--set", "sampling.top_p=1.5"], r"sampling\.top_p = 1\.5 must be in \(0, 1\]"),
    ("top-k-negative", [*LM, "--set", "sampling.top_k=-1"], r"sampling\.top_k = -1 must be >= 0"),
    ("temperature-zero", [*LM, "--set", "sampling.temperature=0"], r"sampling\.temperature = 0\.0 must be > 0"),
    ("temperature-nan", [*LM, "--set", "sampling.temperature=nan"], r"sampling\.temperature = 'nan' is not a finite"),
    ("max-new-tokens-zero", [*LM, "--set", "sampling.max_new_tokens=0"],
     r"sampling\.max_new_tokens = 0 must be a positive integer"),
    ("eval-size-zero", [*LM, "--set", "eval_size=0"], r"eval_size = 0 must be a positive integer"),
    ("eval-every-zero", [*LM, "--set", "eval_every=0"], r"eval_every = 0 must be a positive integer"),
    ("checkpoint-every-zero", [*LM, "--set", "checkpoint_every=0"], r"checkpoint_every = 0 must be a positive"),
    ("grad-clip-zero", [*LM, "--set", "algo.grad_clip=0"], r"algo\.grad_clip = 0\.0 must be > 0"),
    ("weight-decay", [*LM, "--set", "algo.weight_decay=-1"], r"algo\.weight_decay = -1\.0 must be >= 0"),
    ("warmup", [*LM, "--set", "algo.warmup_steps=-1"], r"algo\.warmup_steps = -1 must be >= 0"),
    ("minibatches", [*LM, "--set", "algo.minibatches=3"], r"must divide algo\.prompts_per_step = 2"),
    ("kl-coef-alone", [*LM, "--set", "algo.kl_coef=0.1"], r"algo\.kl_placement = 'none' with algo\.kl_coef = 0\.1"),
    ("pretrain-steps", [*LM, "--set", "policy.pretrain_steps=0"], r"policy\.pretrain_steps = 0 must be a positive"),
    ("pretrain-lr", [*LM, "--set", "policy.pretrain_lr=-1"], r"policy\.pretrain_lr = -1\.0 must be in \(0, inf\)"),
    ("pretrain-stop", [*LM, "--set", "policy.pretrain_stop_pass1=1.5"],
     r"policy\.pretrain_stop_pass1 = 1\.5 must be in \(0, 1\]"),
    ("pretrain-check-every", [*LM, "--set", "policy.pretrain_check_every=0"],
     r"policy\.pretrain_check_every = 0 must be a positive"),
    ("threads", [*LM, "--set", "threads=-2"], r"threads = -2: use 0 \(torch default\) or a positive count"),
    ("replay-prob", [*LM, "--set", "algo.remix.replay_prob=1"], r"algo\.remix\.replay_prob = 1\.0 must be in \[0, 1\)"),
    ("critic-lr", [*LM, "--set", "algo.critic.lr=0"], r"algo\.critic\.lr = 0\.0 must be > 0"),
    ("staleness", [*LM, "--async", "--set", "async_rl.max_staleness=-1"], r"async_rl\.max_staleness = -1 must be"),
    ("ewma-beta", [*LM, "--async", "--set", "async_rl.ewma_beta=1"], r"async_rl\.ewma_beta = 1\.0 must be in \[0, 1\)"),
    ("actor-delay", [*LM, "--async", "--set", "async_rl.actor_delay=nan"], r"async_rl\.actor_delay = 'nan' is not a"),
    ("async-without-async", [*LM, "--set", "async_rl.max_staleness=4"], r"set without async_rl\.enabled=true"),
    ("context", [*LM, "--set", "sampling.max_new_tokens=600"],
     r"task arithmetic: a prompt of \d+ tokens \+ max_new_tokens = 600 exceeds the model's context of 512"),
    ("context-prompts", [*LM, "--task", "jsonl", "--set", "task.params={path: {f}/long.jsonl}"],
     r"task jsonl: a prompt of \d{3} tokens \+ max_new_tokens = 3 exceeds the model's context of 512"),
    # YAML files and --set syntax -----------------------------------------------------------------------
    ("yaml-syntax", [*LM, "--config", "{f}/syntax.yaml"],
     r"config file .*syntax\.yaml: line \d+, column \d+ is not valid YAML \(expected ',' or '\]'"),
    ("yaml-list", [*LM, "--config", "{f}/list.yaml"], r"config file .*list\.yaml: TrainConfig: expected a mapping"),
    ("yaml-scalar", [*LM, "--config", "{f}/scalar.yaml"], r"config file .*scalar\.yaml: TrainConfig: expected a map"),
    ("yaml-unknown-key", [*LM, "--config", "{f}/unknown.yaml"],
     r"config file .*unknown\.yaml: unknown config key\(s\) \['algo\.lrr'\]; valid keys here"),
    ("yaml-wrong-type", [*LM, "--config", "{f}/wrongtype.yaml"], r"wrongtype\.yaml: steps must be int, got 'ten'"),
    ("yaml-nan", [*LM, "--config", "{f}/nan.yaml"], r"nan\.yaml: algo\.lr = nan is not a finite number"),
    ("yaml-missing", [*LM, "--config", "{f}/none.yaml"], r"config file .*none\.yaml does not exist"),
    ("set-no-equals", [*LM, "--set", "algo.lr"], r"--set 'algo\.lr': expected KEY=VALUE"),
    ("set-no-key", [*LM, "--set", "=3"], r"--set '=3': expected KEY=VALUE"),
    ("set-bad-yaml", [*LM, "--set", "algo.lr=[1,"], r"--set 'algo\.lr=\[1,': line 1, column \d+ is not valid YAML"),
    # model folders and tokenizers ----------------------------------------------------------------------
    ("model-missing", [*LM, "--model", "{f}/nothing"], r"model folder '.*nothing' does not exist"),
    ("model-is-file", [*LM, "--model", "{f}/list.yaml"], r"model folder '.*list\.yaml' does not exist or is not a"),
    ("model-no-config", [*LM, "--model", "{f}/no_config"], r"no_config has no config\.json \(the model config\)"),
    ("model-garbage-config", [*LM, "--model", "{f}/garbage_config"],
     r"garbage_config/config\.json \(the model config\) is not valid JSON"),
    ("model-config-list", [*LM, "--model", "{f}/list_config"], r"list_config/config\.json has no model_type"),
    ("model-unknown-type", [*LM, "--model", "{f}/unknown_type"], r"the model in .*unknown_type does not load"),
    ("model-no-weights", [*LM, "--model", "{f}/no_weights"], r"no_weights has no weights \(\*\.safetensors or"),
    ("model-truncated", [*LM, "--model", "{f}/truncated"],
     r"truncated/model\.safetensors is truncated or damaged: \d+ bytes where its header describes \d+"),
    ("model-tiny-file", [*LM, "--model", "{f}/stub"], r"stub/model\.safetensors is truncated or not a safetensors"),
    ("model-garbage-header", [*LM, "--model", "{f}/garbage_header"],
     r"garbage_header/model\.safetensors has a damaged header"),
    ("model-garbage-bin", [*LM, "--model", "{f}/garbage_bin"], r"the model in .*garbage_bin does not load"),
    ("tokenizer-missing", [*LM, "--model", "{f}/no_tokenizer"], r"no_tokenizer has no tokenizer files"),
    ("tokenizer-garbage", [*LM, "--model", "{f}/garbage_tokenizer"],
     r"garbage_tokenizer/tokenizer\.json \(a tokenizer file\) is not valid JSON"),
    ("tokenizer-vocab", [*LM, "--model", "{f}/small_vocab"], r"has 100 tokens but the model embeds only 50"),
    ("tokenizer-no-eos", [*LM, "--model", "{f}/no_eos"], r"the tokenizer in .*no_eos has no EOS token.*set eos_token"),
    ("eval-truncated", [*EVAL, "--model", "{f}/truncated"], r"truncated/model\.safetensors is truncated"),
    ("eval-n-zero", [*EVAL, "--n", "0"], r"--n 0: must be a positive integer"),
    ("eval-max-new-tokens", [*EVAL, "--max-new-tokens", "0"], r"--max-new-tokens 0: must be a positive integer"),
    ("eval-context", [*EVAL, "--max-new-tokens", "600"], r"a prompt of \d+ tokens \+ max_new_tokens = 600 exceeds"),
    ("eval-task", [*EVAL, "--task", "nosuch"], r"--task 'nosuch' / task.params \{\}: unknown task 'nosuch'"),
    ("eval-level", [*EVAL, "--level", "99"], r"--task 'arithmetic' / task.params \{'level': 99\}: .*level"),
    ("lm-preset", [*LM, "--preset", "nosuch"], r"--preset 'nosuch' is not a language-model preset; valid presets: "
     r"\['ppo-max'\] \(classic-control presets need --env\)"),
    ("pretrain-preset", ["pretrain", "--preset", "huge"], r"preset = 'huge' is not one of \['tiny'"),
    ("pretrain-steps-flag", ["pretrain", "--steps", "0"], r"steps = 0 must be a positive integer"),
    ("pretrain-lr-flag", ["pretrain", "--lr", "nan"], r"lr = nan is not a finite number"),
    ("pretrain-task", ["pretrain", "--task", "nosuch"], r"unknown task 'nosuch'"),
    ("pretrain-model-missing", ["pretrain", "--model", "{f}/nothing"], r"model folder '.*nothing' does not exist"),
    ("pretrain-model-no-config", ["pretrain", "--model", "{f}/no_config"],
     r"no_config has no config\.json \(the model config\)"),
    ("pretrain-model-unknown-type", ["pretrain", "--model", "{f}/unknown_type"],
     r"the model in .*unknown_type does not load"),
    ("pretrain-model-truncated", ["pretrain", "--model", "{f}/truncated"],
     r"truncated/model\.safetensors is truncated or damaged"),
    ("pretrain-model-no-tokenizer", ["pretrain", "--model", "{f}/no_tokenizer"],
     r"no_tokenizer has no tokenizer files"),
    ("pretrain-model-context", ["pretrain", "--model", "{f}/short_context", "--steps", "1"],
     r"task arithmetic: a demonstration of \d+ tokens \(prompt, completion, EOS\) exceeds the model's context of 4"),
    ("sweep-staleness", ["sweep", "--staleness", "0,two", "--out", "sweep"], r"--staleness '0,two': give comma-"),
    ("sweep-workers", ["sweep", "--workers", "0", "--out", "sweep"], r"sweep workers = 0 must be >= 1"),
    ("sweep-objective", ["sweep", "--objectives", "ppo,nosuch", "--out", "sweep"], r"unknown objective 'nosuch'"),
    # runs and checkpoints for --resume ---------------------------------------------------------------------
    ("resume-not-a-run", ["train", "--resume", "{f}/model"], r"model is not a run directory \(no config\.yaml\)"),
    ("resume-missing", ["train", "--resume", "{f}/nothing"], r"nothing is not a run directory"),
    ("resume-garbage-checkpoints", ["train", "--resume", "{f}/run_garbage"],
     r"run_garbage has no intact checkpoint: .*step-00000001 is damaged: manifest\.json is missing"),
    ("resume-bad-checksum", ["train", "--resume", "{f}/run_checksum"],
     r"step-00000001 is damaged: weights\.safetensors does not match its checksum in manifest\.json"),
    ("resume-config-yaml", ["train", "--resume", "{f}/run_syntax"],
     r"run_syntax/config\.yaml: line \d+, column \d+ is not valid YAML"),
    ("resume-config-list", ["train", "--resume", "{f}/run_list"], r"run_list/config\.yaml holds a list, not a run"),
    ("resume-config-nan", ["train", "--resume", "{f}/run_nan"],
     r"run_nan/config\.yaml: algo\.lr = nan is not a finite number"),
    ("resume-with-config", ["train", "--resume", "{f}/run_garbage", "--config", "{f}/nan.yaml"],
     r"--config with --resume: .*drop --config"),
    ("resume-changed-field", ["train", "--resume", "{f}/run_garbage", "--objective", "ppo"],
     r"these fields differ: algo\.objective \(stored 'grpo', given 'ppo'\)"),
    # classic control -----------------------------------------------------------------------------------
    ("gym-env", [*GYM, "--env", "NoSuch-v0"], r"unknown environment id 'NoSuch-v0'.*CartPole-v1"),
    ("gym-algo", [*GYM, "--algo", "sac"], r"algo = 'sac' is not one of \['ppo'"),
    ("gym-preset", [*GYM, "--preset", "nosuch"], r"--preset 'nosuch' is not a gym preset; valid presets: \["),
    ("gym-objective", [*GYM, "--objective", "nosuch"], r"unknown objective 'nosuch'; valid names:"),
    ("gym-objective-param", [*GYM, "--set", "ppo.objective_params={nosuch: 1}"],
     r"ppo\.objective_params: objective 'ppo' has no parameter\(s\) \['nosuch'\]; valid:"),
    ("gym-clip", [*GYM, "--set", "ppo.clip_coef=0"], r"ppo\.clip_coef must be > 0.*ppo\.clip_coef=0\.2"),
    ("gym-gamma", [*GYM, "--set", "ppo.gamma=-0.5"], r"ppo\.gamma = -0\.5 must be in \[0, 1\]"),
    ("gym-lambda", [*GYM, "--set", "ppo.gae_lambda=1.5"], r"ppo\.gae_lambda = 1\.5 must be in \[0, 1\]"),
    ("gym-num-envs", [*GYM, "--set", "ppo.num_envs=0"], r"ppo: need num_envs, num_steps >= 1"),
    ("gym-lr-nan", [*GYM, "--set", "ppo.learning_rate=nan"], r"ppo\.learning_rate = 'nan' is not a finite number"),
    ("gym-lr-negative", [*GYM, "--set", "ppo.learning_rate=-1"], r"ppo\.learning_rate = -1\.0 must be in \(0, inf\)"),
    ("gym-hidden-empty", [*GYM, "--set", "ppo.hidden=[]"], r"ppo\.hidden = \[\] must list one or more positive"),
    ("gym-hidden-zero", [*GYM, "--set", "ppo.hidden=[0]"], r"ppo\.hidden = \[0\] must list one or more positive"),
    ("gym-ent-coef", [*GYM, "--set", "ppo.ent_coef=-1"], r"ppo\.ent_coef = -1\.0 must be in \[0, inf\)"),
    ("gym-epochs", [*GYM, "--set", "ppo.update_epochs=0"], r"ppo\.update_epochs = 0 must be in \[1, inf\)"),
    ("gym-grad-norm", [*GYM, "--set", "ppo.max_grad_norm=0"], r"ppo\.max_grad_norm = 0\.0 must be in \(0, inf\)"),
    ("gym-target-kl", [*GYM, "--set", "ppo.target_kl=-1"], r"ppo\.target_kl = -1\.0 must be in \(0, inf\) \(or null"),
    ("gym-pqn-gamma", [*GYM, "--algo", "pqn", "--set", "pqn.gamma=2"], r"pqn\.gamma = 2\.0 must be in \[0, 1\]"),
    ("gym-pqn-epsilon", [*GYM, "--algo", "pqn", "--set", "pqn.start_e=2"], r"pqn\.start_e = 2\.0 must be in \[0, 1\]"),
    ("gym-mdpo-off-tau", [*GYM, "--set", "mdpo_off.tau=2"], r"mdpo_off\.tau = 2\.0 must be in \(0, 1\]"),
    ("gym-total-steps-nan", [*GYM, "--set", "total_steps=nan"], r"total_steps must be int, got 'nan'"),
    ("gym-total-steps-zero", [*GYM, "--set", "total_steps=0"], r"total_steps must be >= 1, got 0"),
    ("gym-vector", [*GYM, "--set", "vector=gpu"], r"vector = 'gpu' is not one of \['sync', 'async'\]"),
    ("gym-keep-checkpoints", [*GYM, "--set", "keep_checkpoints=0"], r"keep_checkpoints must be >= 1, got 0"),
    ("gym-gate-estimator", [*GYM, "--set", "ope_gate.estimator=dm"], r"ope_gate\.estimator must be one of \['pdis'"),
    ("gym-yaml-unknown", [*GYM, "--config", "{f}/wrongtype.yaml"],
     r"wrongtype\.yaml: unknown config key\(s\) \['steps'\]"),
]


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time (what a case must leave alone)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    f = tmp_path_factory.mktemp("bad")
    model, tok = build_policy("tiny", seed=0)
    for name in ("model", "truncated", "stub", "garbage_header", "no_config", "garbage_config", "list_config",
                 "unknown_type", "garbage_tokenizer", "no_tokenizer", "no_weights", "garbage_bin", "no_eos"):
        model.save_pretrained(f / name)
        if name != "no_tokenizer":
            tok.save_pretrained(f / name)
    weights = f / "truncated" / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)
    (f / "stub" / "model.safetensors").write_bytes(b"\x10\x00\x00")
    (f / "garbage_header" / "model.safetensors").write_bytes((12).to_bytes(8, "little") + b"{not json!!}" + b"0" * 64)
    (f / "no_config" / "config.json").unlink()
    (f / "garbage_config" / "config.json").write_text("{not json")
    (f / "list_config" / "config.json").write_text("[1, 2]")
    (f / "unknown_type" / "config.json").write_text(json.dumps({"model_type": "nosuch_llm"}))
    (f / "garbage_tokenizer" / "tokenizer.json").write_text("garbage")
    tok_config = f / "no_eos" / "tokenizer_config.json"
    tok_config.write_text(json.dumps({k: v for k, v in json.loads(tok_config.read_text()).items() if k != "eos_token"}))
    (f / "no_weights" / "model.safetensors").unlink()
    (f / "garbage_bin" / "model.safetensors").unlink()
    (f / "garbage_bin" / "pytorch_model.bin").write_bytes(b"not a pickle")
    short, _ = build_policy("nano", seed=0)
    short.config.max_position_embeddings = 4
    short.save_pretrained(f / "short_context")
    tok.save_pretrained(f / "short_context")
    model.resize_token_embeddings(50)
    model.save_pretrained(f / "small_vocab")
    tok.save_pretrained(f / "small_vocab")
    rows = [{"question": f"{i} " + "x" * 600, "answer": str(i)} for i in range(20)]
    (f / "long.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for name, text in {"syntax.yaml": "algo: {lr: [1, 2\n", "list.yaml": "- 1\n- 2\n", "scalar.yaml": "3\n",
                       "unknown.yaml": "algo:\n  lrr: 1\n", "wrongtype.yaml": "steps: ten\n",
                       "nan.yaml": "algo:\n  lr: .nan\n"}.items():
        (f / name).write_text(text)
    stored = to_dict(TrainConfig()) | {"policy_source": str(f / "model")}
    stored["policy"]["model"] = str(f / "model")
    for name in ("run_garbage", "run_checksum", "run_syntax", "run_list", "run_nan"):
        (f / name / "checkpoints").mkdir(parents=True)
        (f / name / "config.yaml").write_text(yaml.safe_dump(stored | {"run_dir": str(f / name)}))
    step = f / "run_garbage" / "checkpoints" / "step-00000001"
    step.mkdir()
    (step / "weights.safetensors").write_bytes(b"garbage")
    (f / "run_garbage" / "checkpoints" / "latest").write_text("garbage")
    step = f / "run_checksum" / "checkpoints" / "step-00000001"
    step.mkdir()
    for name in ("weights.safetensors", "state.safetensors", "state.json"):
        (step / name).write_bytes(b"x")
    files = {n: {"bytes": 1, "sha256": "0" * 64} for n in ("weights.safetensors", "state.safetensors", "state.json")}
    (step / "manifest.json").write_text(json.dumps({"format": "ratiolab-checkpoint/2", "step": 1, "files": files}))
    (f / "run_syntax" / "config.yaml").write_text("algo: [\n")
    (f / "run_list" / "config.yaml").write_text("- 1\n")
    broken = stored | {"algo": stored["algo"] | {"lr": float("nan")}}
    (f / "run_nan" / "config.yaml").write_text(yaml.safe_dump(broken))
    return f


def test_the_table_is_large_and_every_id_unique() -> None:
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize(("argv", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_naming_the_field_and_leaves_nothing_behind(
    argv: list[str], message: str, fixtures: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    before = _tree(fixtures)
    code = main([a.replace("{f}", str(fixtures)) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]  # besides loaders' progress bars
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err and err.rstrip().endswith(lines[0]), err
    assert re.search(message.replace("{f}", re.escape(str(fixtures))), lines[0]), lines[0]
    assert list(tmp_path.iterdir()) == []  # no run directory, no cache, nothing
    assert _tree(fixtures) == before  # the given model, YAML and run folders are untouched


def test_configs_built_in_python_get_the_same_checks() -> None:
    from ratiolab.config import ConfigError
    from ratiolab.gym import GymTrainConfig, PPOConfig
    from ratiolab.learner import AlgoConfig, SamplingConfig

    with pytest.raises(ConfigError, match=r"algo\.lr = nan is not a finite number"):
        TrainConfig(algo=AlgoConfig(lr=float("nan"))).validate()
    with pytest.raises(ConfigError, match=r"sampling\.backend = 'vllm' is not one of"):
        TrainConfig(sampling=SamplingConfig(backend="vllm")).validate()  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"ppo\.gamma = inf is not a finite number"):
        GymTrainConfig(ppo=PPOConfig(gamma=float("inf")))
