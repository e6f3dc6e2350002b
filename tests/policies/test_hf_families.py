"""Any Hugging Face causal LM: GPT-2 (absolute positions, tied embeddings), Llama and Qwen2 (attention biases)
built from tiny configs with a byte-level BPE tokenizer trained here on generated task text, saved with
``save_pretrained`` and run through the sampler, the scorer, supervised steps and ``ratiolab train``."""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForCausalLM,
    BloomConfig,
    BloomForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from ratiolab import tasks
from ratiolab.cli import main
from ratiolab.config import override
from ratiolab.engines import HFEngine, SamplingParams, hf_engine
from ratiolab.engines.decoders import CompiledLlamaDecoder, FusedLlamaDecoder, HFDecoder
from ratiolab.learner import TrainConfig
from ratiolab.learner.lm import LMLearner
from ratiolab.policies import load_policy, token_logprobs
from ratiolab.policies.pretrain import completion_loss, demonstration_batch
from ratiolab.rollout import collect

FAMILIES = ("gpt2", "llama", "qwen2")
CHAT = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def _rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    pairs = [(rng.randint(0, 49), rng.randint(0, 49)) for _ in range(n)]
    return [{"q": f"What is {a} plus {b}?", "a": f"{a}+{b}={a + b} #### {a + b}"} for a, b in pairs]


def bpe_tokenizer(chat: bool = True) -> PreTrainedTokenizerFast:
    """Byte-level BPE (``tokenizers``) trained on generated task text; BOS in front, ``<eos>`` ends a response."""
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<pad>", "<bos>", "<eos>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator([f"{r['q']}\n{r['a']}" for r in _rows(400, seed=1)], trainer)
    core.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>",
                                   padding_side="left", chat_template=CHAT if chat else None)


def build(family: str, vocab: int, tied: bool = False) -> PreTrainedModel:
    """A tiny fresh model of ``family`` (seeded); GPT-2 ties its embeddings by default, here only if ``tied``."""
    ids = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
    shape = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
             "max_position_embeddings": 96}
    torch.manual_seed(0)
    if family == "gpt2":
        return GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=96,
                                          tie_word_embeddings=tied, **ids))
    if family == "llama":
        return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, **shape, **ids))
    if family.startswith("qwen2"):
        window = {"use_sliding_window": True, "sliding_window": 4} if family == "qwen2-sliding" else {}
        return Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab, num_key_value_heads=2, tie_word_embeddings=False,
                                            **window, **shape, **ids))
    if family == "llama-bias":
        return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, attention_bias=True, mlp_bias=True, **shape, **ids))
    return BloomForCausalLM(BloomConfig(vocab_size=vocab, hidden_size=32, n_layer=2, n_head=4, **ids))


@pytest.fixture(scope="module")
def tok() -> PreTrainedTokenizerFast:
    return bpe_tokenizer()


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory, tok: PreTrainedTokenizerFast) -> dict[str, Path]:
    """``save_pretrained`` folders (model + tokenizer) per family, and the task's JSONL file."""
    root = tmp_path_factory.mktemp("families")
    out = {}
    for family in FAMILIES:
        out[family] = root / family
        build(family, len(tok)).save_pretrained(out[family])
        tok.save_pretrained(out[family])
    out["data"] = root / "data.jsonl"
    out["data"].write_text("\n".join(json.dumps(r) for r in _rows(40)))
    return out


def test_bpe_tokenizer_is_byte_level_bpe(tok: PreTrainedTokenizerFast) -> None:
    pieces = tok.tokenize("What is 12 plus 3?\n")
    assert "Ġplus" in pieces and pieces[-1] == "Ċ"  # merged words with the byte-level space and newline
    assert tok.decode(tok("12+3=15 #### 15")["input_ids"], skip_special_tokens=True) == "12+3=15 #### 15"


@pytest.mark.parametrize("family", FAMILIES)
def test_sampler_and_scorer_agree_under_left_padding(family: str, folders: dict[str, Path]) -> None:
    """An fp32 engine's ``behav_logp`` equals the scorer's ``logp`` token by token, on a batch whose prompts are
    left-padded to different widths; a prompt scored alone gives the same log-probs as in the padded batch (GPT-2
    adds absolute position embeddings, so positions must skip the padding on both sides)."""
    model, tok = load_policy(folders[family])
    engine = HFEngine(model, tok, dtype=torch.float32)
    prompts = ["What is 3 plus 4?\n", "What is 12 plus 33 and then what is 7 plus 8?\n"]
    rollout = engine.generate(prompts, SamplingParams(max_new_tokens=6), seed=1)
    assert rollout.prompt_mask[0, 0] == 0  # the short prompt is left-padded
    ids, attention, start = rollout.model_inputs()
    with torch.no_grad():
        scores = token_logprobs(model, ids, attention, start)
        alone_ids, alone_mask, _ = rollout.model_inputs()
        pad = int((rollout.prompt_mask[0] == 0).sum())
        alone = token_logprobs(model, alone_ids[:1, pad:], alone_mask[:1, pad:], start - pad)
    mask = rollout.mask.bool()
    assert torch.allclose(scores.logp[mask], rollout.behav_logp[mask], atol=1e-5)
    assert torch.allclose(alone.logp[0][mask[0]], scores.logp[0][mask[0]], atol=1e-5)


@pytest.mark.parametrize(("family", "asked", "runs"), [
    ("llama", "fused", "fused"), ("qwen2", "auto", "fused"), ("gpt2", "fused", "loop"), ("gpt2", "compiled", "loop"),
    ("gpt2", "auto", "loop"), ("qwen2-sliding", "fused", "loop"), ("bloom", "loop", "generate"),
])
def test_unsupported_backend_falls_back_with_one_line(family: str, asked: Any, runs: str, tok: PreTrainedTokenizerFast,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """The fused decoder reproduces Llama and Qwen2 (full attention) only: other models asked for it run their own
    forward in the decode loop, and a model without ``position_ids`` (Bloom, ALiBi) runs ``generate``; one log
    line, and the engine samples."""
    hf_engine._fallback_message.cache_clear()
    model = build(family, len(tok))
    with caplog.at_level(logging.WARNING, logger="ratiolab.engines.hf_engine"):
        engine = HFEngine(model, tok, dtype=torch.float32, backend=asked)
        HFEngine(model, tok, dtype=torch.float32, backend=asked)  # the message is given once
    assert engine.backend == runs
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == (runs != ("fused" if asked == "auto" else asked)), lines
    if lines:
        assert lines[0].count("\n") == 0 and type(model).__name__ in lines[0] and repr(runs) in lines[0]
    rollout = engine.generate(["What is 1 plus 2?\n", "What is 10 plus 20?\n"], SamplingParams(max_new_tokens=4))
    assert rollout.tokens.shape[0] == 2 and bool((rollout.behav_logp[rollout.mask.bool()] < 0).all())


@pytest.mark.parametrize(("family", "decoder"), [
    ("qwen2", FusedLlamaDecoder), ("llama-bias", FusedLlamaDecoder),
    pytest.param("qwen2", CompiledLlamaDecoder, marks=pytest.mark.slow),  # a second torch.compile: ~30 s
])
def test_fused_decoder_reproduces_biased_projections(family: str, decoder: type[FusedLlamaDecoder],
                                                     tok: PreTrainedTokenizerFast) -> None:
    """Qwen2's q/k/v biases (and Llama's optional attention and MLP biases) in the fused decoder: its logits match
    the model's own forward at the prefill and at each step of a left-padded batch (biases randomised so that
    dropping one changes the logits)."""
    model = build(family, len(tok)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.5)
    ids, mask = HFEngine(model, tok, dtype=torch.float32).encode_prompts(["What is 3 plus 4?\n", "12+3=15 #### 1"])
    fused, reference = decoder(model, 2, ids.shape[1] + 3), HFDecoder(model)
    with torch.no_grad():
        torch.testing.assert_close(fused.prefill(ids, mask), reference.prefill(ids, mask), atol=1e-5, rtol=0)
        for token in ([5, 9], [40, 2], [7, 7]):
            step = torch.tensor(token)
            torch.testing.assert_close(fused.step(step), reference.step(step), atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_supervised_steps_lower_the_demonstration_loss(family: str, folders: dict[str, Path]) -> None:
    """The pre-training loss (completion tokens of the task's demonstrations) trains every family."""
    model, tok = load_policy(folders[family])
    task = tasks.get("jsonl", path=folders["data"], question="q", answer="a")
    batch = demonstration_batch(tok, task, task.sample(16, "train"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = completion_loss(model, *batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0], losses


def _train(model: Path, data: Path, run: Path, *extra: str) -> int:
    return main(["train", "--model", str(model), "--task", "jsonl", "--run-dir", str(run),
                 "--set", f"task.params={{path: {data}, question: q, answer: a{''.join(extra)}}}",
                 "--set", "steps=2", "--set", "algo.prompts_per_step=2", "--set", "algo.samples_per_prompt=2",
                 "--set", "algo.minibatches=1", "--set", "sampling.max_new_tokens=16", "--set", "eval_size=2",
                 "--set", "threads=1", "--set", "algo.lr=1e-2", "--set", "algo.entropy_coef=0.01"])


@pytest.fixture(scope="module")
def trained(folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The run folder of two RL steps from ``family``'s folder, trained once per module (Qwen2 with chat prompts)."""
    done: dict[str, Path] = {}

    def run(family: str) -> Path:
        if family not in done:
            root = tmp_path_factory.mktemp(f"run-{family}")
            with pytest.MonkeyPatch.context() as mp:
                mp.chdir(root)
                chat = ", chat_template: true" if family == "qwen2" else ""
                assert _train(folders[family], folders["data"], root / "run", chat) == 0
            done[family] = root / "run"
        return done[family]

    return run


@pytest.mark.parametrize("family", FAMILIES)
def test_train_runs_rl_steps_end_to_end(family: str, folders: dict[str, Path], trained: Callable[[str], Path]) -> None:
    """``ratiolab train --model DIR`` runs two RL steps on each family (Qwen2 on chat-template prompts); the
    checkpoint's weights load back (strictly) into the ``AutoModelForCausalLM`` of the folder and moved."""
    run = trained(family)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2] and all(math.isfinite(r["loss"]) for r in rows[1:])
    start = AutoModelForCausalLM.from_pretrained(folders[family])
    weights = AutoModelForCausalLM.from_pretrained(folders[family])
    weights.load_state_dict(load_file(run / "checkpoints" / "step-00000002" / "model.safetensors"))
    moved = [n for n, p in weights.named_parameters() if not torch.equal(p, start.get_parameter(n))]
    assert len(moved) == len(list(start.parameters())), moved


def test_train_gpt2_with_tied_embeddings(tok: PreTrainedTokenizerFast, folders: dict[str, Path], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    build("gpt2", len(tok), tied=True).save_pretrained(tmp_path / "tied")
    tok.save_pretrained(tmp_path / "tied")
    assert _train(tmp_path / "tied", folders["data"], tmp_path / "run") == 0


def test_checkpoint_loads_with_plain_from_pretrained(trained: Callable[[str], Path]) -> None:
    model = AutoModelForCausalLM.from_pretrained(trained("qwen2") / "checkpoints" / "step-00000002")
    assert isinstance(model, Qwen2ForCausalLM)


def test_chat_template_renders_prompts(tok: PreTrainedTokenizerFast, folders: dict[str, Path]) -> None:
    """``task.params.chat_template``: the engine encodes each prompt as the tokenizer's chat template renders a
    one-turn chat (system first), the reward still sees the plain question; off, the plain string with BOS."""
    chat = tasks.get("jsonl", path=folders["data"], question="q", answer="a", chat_template=True, system="Add.")
    plain = tasks.get("jsonl", path=folders["data"], question="q", answer="a")
    p, q = chat.sample(1, "test")[0], plain.sample(1, "test")[0]
    assert p.prompt == q.prompt and p.answer == q.answer
    engine = HFEngine(build("qwen2", len(tok)), tok, dtype=torch.float32)
    ids, _ = engine.encode_prompts([p.prompt])
    text = f"<bos><|system|>Add.\n<|user|>{q.prompt}\n<|assistant|>"
    assert ids[0].tolist() == tok(text, add_special_tokens=False)["input_ids"]
    assert engine.encode_prompts([q.prompt])[0][0].tolist() == tok(q.prompt)["input_ids"]
    assert ids.shape[1] > engine.encode_prompts([q.prompt])[0].shape[1]


def test_chat_prompts_need_a_chat_template(tmp_path: Path, folders: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A tokenizer without a chat template meets chat prompts: one error line, before any file is written."""
    monkeypatch.chdir(tmp_path)
    bare = tmp_path / "bare"
    build("llama", len(bpe_tokenizer())).save_pretrained(bare)
    bpe_tokenizer(chat=False).save_pretrained(bare)
    assert _train(bare, folders["data"], tmp_path / "run", ", chat_template: true") == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # not the loading bar
    assert len(errors) == 1 and errors[0].startswith("error: task jsonl: a chat prompt")
    assert "needs a tokenizer with a chat_template" in errors[0] and not (tmp_path / "run").exists()


@pytest.mark.parametrize("family", FAMILIES)
def test_saved_tokenizer_loads_back_as_saved(family: str, tok: PreTrainedTokenizerFast,
                                             folders: dict[str, Path]) -> None:
    """The BPE tokenizer saved next to any family's config tokenizes as before (AutoTokenizer alone would
    turn it into ``Qwen2Tokenizer`` in a Qwen2 folder: another pre-tokenizer and an extra ``<|endoftext|>``)."""
    _, loaded = load_policy(folders[family])
    text = "What is 12 plus 3?\n12+3=15 #### 15"
    assert loaded(text)["input_ids"] == tok(text)["input_ids"] and len(loaded) == len(tok)
    assert loaded.chat_template == CHAT and loaded.padding_side == "left"


def _pretrain(model: Path, data: Path, out: Path, *extra: str) -> int:
    return main(["pretrain", "--model", str(model), "--task", "jsonl", "--out", str(out), "--steps", "30",
                 "--lr", "1e-2", "--set", f"task.params={{path: {data}, question: q, answer: a{''.join(extra)}}}"])


@pytest.mark.parametrize("family", FAMILIES)
def test_pretrain_from_a_model_folder(family: str, folders: dict[str, Path], tmp_path: Path) -> None:
    """``ratiolab pretrain --model DIR`` continues any family's checkpoint on the task's demonstrations and writes a
    folder that plain ``AutoModelForCausalLM.from_pretrained`` loads as the same class, every weight moved and the
    demonstration loss lower; the tokenizer is saved with it unchanged."""
    assert _pretrain(folders[family], folders["data"], tmp_path / "out") == 0
    start = AutoModelForCausalLM.from_pretrained(folders[family])
    trained = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert type(trained) is type(start)
    moved = [n for n, p in trained.named_parameters() if not torch.equal(p, start.get_parameter(n))]
    assert len(moved) == len(list(start.parameters())), moved
    _, tok = load_policy(tmp_path / "out")
    task = tasks.get("jsonl", path=folders["data"], question="q", answer="a")
    batch = demonstration_batch(tok, task, task.sample(16, "train"))
    with torch.no_grad():
        assert float(completion_loss(trained.eval(), *batch)) < 0.8 * float(completion_loss(start.eval(), *batch))
    assert json.loads((tmp_path / "out" / "pretrain.json").read_text())["config"]["model"] == str(folders[family])


def test_pretraining_and_rl_sampling_encode_chat_prompts_alike(tok: PreTrainedTokenizerFast,
                                                               folders: dict[str, Path]) -> None:
    """With ``chat_template`` on, a demonstration's prompt tokens are the ids the RL engine samples after (chat
    template, generation prompt, no extra BOS); the completion follows, then EOS. Off, both use the plain prompt."""
    engine = HFEngine(build("qwen2", len(tok)), tok, dtype=torch.float32)
    for chat in (True, False):
        extra: dict[str, Any] = {"chat_template": True, "system": "Add."} if chat else {}
        task = tasks.get("jsonl", path=folders["data"], question="q", answer="a", **extra)
        problems = task.sample(3, "train")
        ids, attention, labels = demonstration_batch(tok, task, problems)
        prompts, prompt_mask = engine.encode_prompts([p.prompt for p in problems])
        for i, p in enumerate(problems):
            sampled = prompts[i][prompt_mask[i].bool()].tolist()
            row = ids[i][attention[i].bool()].tolist()
            assert row[: len(sampled)] == sampled and (labels[i, : len(sampled)] == -100).all()
            completion = tok(task.demonstration(p), add_special_tokens=False)["input_ids"]
            assert row[len(sampled):] == [*completion, tok.eos_token_id]
        assert (tok.decode(ids[0][: len(prompts[0][prompt_mask[0].bool()])]).count("<|assistant|>") == 1) == chat


def test_pretrain_chat_prompts_need_a_chat_template(tmp_path: Path, folders: dict[str, Path],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    bare = tmp_path / "bare"
    build("llama", len(bpe_tokenizer())).save_pretrained(bare)
    bpe_tokenizer(chat=False).save_pretrained(bare)
    assert _pretrain(bare, folders["data"], tmp_path / "out", ", chat_template: true") == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("error: task jsonl: a chat prompt"), errors
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("trunk", ["shared", "separate"])
def test_value_head_trains_on_every_family(family: str, trunk: str, folders: dict[str, Path]) -> None:
    """``ppo`` + ``gae``: the value head reads each family's final hidden states (its own trunk: the family's base
    model), and its loss on a fixed batch falls."""
    model, tok = load_policy(folders[family])
    task = tasks.get("jsonl", path=folders["data"], question="q", answer="a")
    exp = collect(HFEngine(model, tok, dtype=torch.float32), task, task.sample(4, "train"), 2,
                  SamplingParams(max_new_tokens=5), seed=0)
    exp.rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    algo = override(TrainConfig(), ["algo.objective=ppo", "algo.advantage=gae", "algo.samples_per_prompt=2",
                                    "algo.minibatches=1", "algo.lr=3e-3", "algo.warmup_steps=0",
                                    f"algo.value.model={trunk}", "algo.value.target_lam=1.0"]).algo
    learner = LMLearner(model, algo, temperature=1.0)
    losses = [learner.update(learner.score(exp), torch.Generator().manual_seed(k))["value/loss"] for k in range(10)]
    assert losses[-1] < 0.6 * losses[0], losses
