"""The asynchronous actor/learner system on Ray (``async_rl.backend=ray``; DESIGN §2-§3).

Same semantics as the local backend (:mod:`ratiolab.learner.async_driver`), other transport:

- the **rollout actor** is a Ray actor (:class:`RolloutWorker`, ``num_cpus=1``) that builds its
  own task, policy copy (architecture and tokenizer from the policy folder) and ``HFEngine``;
- **weights** travel through the Ray object store: after every update the learner ``ray.put``\\ s
  them and hands the reference to a small :class:`WeightBoard` actor (``num_cpus=0``), which the
  rollout actor asks for a newer version before each batch and, with ``partial_rollouts``,
  between two decode steps (one sequence then carries tokens of two versions, each tagged);
- **samples** come back as object refs; a feeder thread in the driver resolves them into the
  same :class:`~ratiolab.buffer.VersionedBuffer` the local backend uses, so the staleness bound
  and the ``wait``/``drop`` policies are the same code. Under ``wait`` the feeder only asks for a
  batch when one started at the latest published version can be consumed within the bound.

The **learner stays in the driver process**: ``train()`` owns the run directory, evaluation,
checkpoints and resume, so they work unchanged, and the learner-side old-logit strategies
(recompute, behavior, snapshot, ewma, loglinear) see every published version. Launch the driver
where the learner should run (the GPU node). ``old_logit_model`` and ``sync_interrupt`` score
buffered tokens inside the actor at the moment a version retires; the buffer lives with the
learner here, so they are rejected with a :class:`~ratiolab.config.ConfigError` (``snapshot``
gives the same exact old logits). A failed batch is regenerated under the same ``uid``; a dead
rollout actor is replaced (``max_restarts`` times).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from ratiolab import tasks
from ratiolab.buffer import VersionedBuffer
from ratiolab.config import ConfigError
from ratiolab.correction.old_logits import RetireScoring, clone_weights
from ratiolab.engines import HFEngine, SamplingParams
from ratiolab.learner.async_config import AsyncConfig
from ratiolab.learner.async_driver import ActorStats, learner_loop, make_old_logits
from ratiolab.learner.config import TrainConfig
from ratiolab.learner.lm import LMLearner
from ratiolab.policies import load_policy
from ratiolab.rollout import Experience, collect

Weights = dict[str, torch.Tensor]
Fault = Callable[[int, int], None]
ACTOR_SIDE_STRATEGIES = ("old_logit_model", "sync_interrupt")
INSTALL_HINT = "pip install 'ratiolab[ray]'"


def require_ray() -> Any:
    """The ``ray`` module, or a ConfigError saying how to install it."""
    try:
        import ray
    except ImportError as err:
        raise ConfigError(f"async_rl.backend=ray needs Ray, which is not installed: {INSTALL_HINT}") from err
    return ray


def _host_port(address: str) -> tuple[str, int]:
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"async_rl.ray_address = {address!r} must be HOST:PORT (e.g. 10.0.0.1:6379) or 'auto'")
    return host, int(port)


def preflight(ac: AsyncConfig, timeout: float = 5.0) -> None:
    """Check a Ray run can start, before any work or file is made.

    Ray must be importable, the old-logit strategy must be learner-side, and something must
    answer at ``ray_address`` within ``timeout`` seconds (a TCP connect; ``'auto'`` is left to Ray).
    """
    require_ray()
    if ac.old_logits in ACTOR_SIDE_STRATEGIES:
        raise ConfigError(
            f"async_rl.old_logits = {ac.old_logits!r} scores tokens inside the rollout actor when a version "
            "retires, which async_rl.backend=ray does not support; use async_rl.old_logits=snapshot (also exact) "
            "or async_rl.backend=local"
        )
    if ac.ray_address is None or ac.ray_address == "auto":
        return
    host, port = _host_port(ac.ray_address)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        raise ConfigError(
            f"async_rl.ray_address = {ac.ray_address!r}: nothing answers at {host}:{port} ({err}); start the Ray "
            f"head there (`ray start --head --port={port}`), fix the address, or leave it unset for a local Ray"
        ) from err


def connect(ac: AsyncConfig) -> bool:
    """Join the cluster at ``ray_address``, or start a local Ray (2 CPUs); returns whether it started one.

    An already initialised Ray session (a test fixture, a notebook) is reused as it is.
    """
    ray = require_ray()
    if ray.is_initialized():
        return False
    if ac.ray_address is None:
        ray.init(num_cpus=2, include_dashboard=False)
        return True
    try:
        ray.init(address=ac.ray_address)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise ConfigError(
            f"async_rl.ray_address = {ac.ray_address!r}: could not join the Ray cluster ({err}); check that "
            "`ray start --head` runs there with the same Ray and Python versions"
        ) from err
    return True


class WeightBoard:
    """Ray actor: the latest published version and an object ref to its weights (boxed in a list,
    so Ray passes the reference instead of the tensors)."""

    def __init__(self) -> None:
        self._version = -1
        self._box: list[Any] = []

    def publish(self, version: int, box: list[Any]) -> None:
        self._version, self._box = version, box

    def latest(self) -> tuple[int, list[Any]]:
        return self._version, self._box


class RolloutWorker:
    """Ray actor: one batch per :meth:`generate` call, on its own task, policy copy and engine."""

    def __init__(self, cfg: TrainConfig, source: str, board: Any, fault: Fault | None = None) -> None:
        from ratiolab.learner.train import _engine

        self.cfg, self.board, self.fault = cfg, board, fault
        self.task = tasks.get(cfg.task.name, **cfg.task.params)
        self.sampling = SamplingParams(
            temperature=cfg.sampling.temperature, top_p=cfg.sampling.top_p, top_k=cfg.sampling.top_k,
            max_new_tokens=cfg.sampling.max_new_tokens,
        )
        model, tok = load_policy(source)
        self.engine: HFEngine = _engine(model, tok, cfg, version=-1)
        self.uid, self.mid_syncs = 0, 0
        self.sync()

    def sync(self) -> bool:
        """Load the board's weights if they are newer than the engine's."""
        import ray

        version, box = ray.get(self.board.latest.remote())
        if version == self.engine.version:
            return False
        self.engine.load_weights(ray.get(box[0]), version)
        return True

    def _on_step(self, step: int) -> None:
        if self.cfg.async_rl.actor_delay:
            time.sleep(self.cfg.async_rl.actor_delay)
        if self.fault is not None:
            self.fault(self.uid, step)
        if self.sync():
            self.mid_syncs += 1

    def generate(self, uid: int) -> tuple[Experience, float, int]:
        """Batch ``uid`` (seeded as on the local backend), its generation seconds and mid-generation syncs."""
        from ratiolab.learner.train import step_seed

        a, cfg = self.cfg.algo, self.cfg
        self.sync()
        self.uid, self.mid_syncs = uid, 0
        problems = self.task.sample(a.prompts_per_step, split="train", seed=step_seed(cfg.seed, uid, "problems"))
        t0 = time.perf_counter()
        exp = collect(
            self.engine, self.task, problems, a.samples_per_prompt, self.sampling,
            seed=step_seed(cfg.seed, uid, "sample"), with_greedy=a.advantage == "remax",
            on_step=self._on_step if cfg.async_rl.partial_rollouts else None,
        )
        exp.uid = uid
        return exp, time.perf_counter() - t0, self.mid_syncs


class Feeder:
    """Driver thread: asks the rollout actor for batch after batch and puts them in the buffer.

    ``inflight_min_version`` is the version published when the batch in flight was requested
    (its tokens are of that version or newer); a failed batch is asked for again under the same
    ``uid``, and a dead actor is replaced, ``max_restarts`` times in all.
    """

    def __init__(self, make_worker: Callable[[], Any], buffer: VersionedBuffer[Experience],
                 published: Callable[[], int], first_uid: int, max_restarts: int = 3) -> None:
        self.make_worker, self.buffer, self.published = make_worker, buffer, published
        self.worker = make_worker()
        self.next_uid, self.max_restarts = first_uid, max_restarts
        self.stats = ActorStats()
        self.inflight_min_version: int | None = None
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="ray-feeder", daemon=True)

    def _fetch(self, uid: int) -> tuple[Experience, float, int] | None:
        import ray

        ref = self.worker.generate.remote(uid)
        while not self.stop.is_set():
            done, _ = ray.wait([ref], timeout=0.1)
            if done:
                result: tuple[Experience, float, int] = ray.get(ref)
                return result
        ray.cancel(ref)
        return None

    def _loop(self) -> None:
        import ray

        while self.buffer.wait_for_room(self.published, self.stop):
            self.inflight_min_version = self.published()
            try:
                result = self._fetch(self.next_uid)
            except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError) as err:
                if self.stats.restarts >= self.max_restarts:
                    self.error = err
                    return
                self.stats.restarts += 1
                if isinstance(err, ray.exceptions.RayActorError):
                    ray.kill(self.worker)
                    self.worker = self.make_worker()
                continue
            except Exception as err:  # anything else (object store, pickling) ends the run with its cause
                self.error = err
                return
            if result is None:
                return
            exp, seconds, mid_syncs = result
            self.buffer.put(exp)
            self.inflight_min_version = None
            self.next_uid += 1
            self.stats.batches += 1
            self.stats.generate_seconds += seconds
            self.stats.syncs_mid_generation += mid_syncs

    def alive(self) -> bool:
        return self.thread.is_alive() and self.error is None

    def start(self) -> None:
        self.thread.start()

    def shutdown(self) -> None:
        import ray

        self.stop.set()
        self.buffer.close()
        self.thread.join(timeout=60)
        ray.kill(self.worker)


def run_async_ray(
    cfg: TrainConfig, learner: LMLearner, engine: HFEngine, first_step: int,
    on_step: Callable[[int, dict[str, Any]], None], fault: Fault | None = None,
) -> dict[str, Any]:
    """:func:`~ratiolab.learner.async_driver.run_async` with the rollout actor on Ray (same rows, same stats).

    ``engine`` (the driver's) is not used for sampling: the rollout actor builds its own.
    """
    from ratiolab.learner.train import policy_source

    ac = cfg.async_rl
    preflight(ac)
    ray = require_ray()
    started = connect(ac)
    source = str(policy_source(cfg, log=lambda _: None).resolve())
    board = ray.remote(num_cpus=0)(WeightBoard).remote()
    version = first_step - 1
    weights = clone_weights(dict(learner.model.state_dict()))

    latest = [version]

    def publish(w: Weights, v: int) -> None:
        ray.get(board.publish.remote(v, [ray.put(w)]))  # blocking: the board holds v before anyone asks
        latest[0] = v

    publish(weights, version)
    buffer: VersionedBuffer[Experience] = VersionedBuffer(ac.max_staleness, ac.staleness_policy)
    strategy = make_old_logits(cfg, learner)
    assert not isinstance(strategy, RetireScoring)  # rejected by preflight
    strategy.on_publish(weights, version)
    worker_cls = ray.remote(num_cpus=1, max_restarts=0)(RolloutWorker)
    feeder = Feeder(lambda: worker_cls.remote(cfg, source, board, fault), buffer, lambda: latest[0], first_step)
    feeder.start()
    try:
        learner_loop(cfg, learner, buffer, strategy, feeder, publish, first_step, on_step,
                     lambda: [feeder.inflight_min_version])
    finally:
        feeder.shutdown()
        ray.kill(board)
        if started:
            ray.shutdown()
    return {"buffer": buffer.stats, "actor": feeder.stats, "strategy": strategy}


__all__ = ["Feeder", "RolloutWorker", "WeightBoard", "connect", "preflight", "require_ray", "run_async_ray"]
