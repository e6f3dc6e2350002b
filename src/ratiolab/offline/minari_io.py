"""Minari export and import of transition datasets (optional: ``pip install 'ratiolab[minari]'``).

Minari stores episodes with ``T + 1`` observations and ``T`` actions, rewards, terminations and
truncations; ratiolab uses its arrow format (pyarrow, no h5py) in the local folder
``$MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``), and nothing is downloaded
(``load_dataset(..., download=False)``). Export writes one Minari episode per episode id (observations
followed by the last successor) with the reference returns as ``ref_min_score`` / ``ref_max_score``
(Minari keeps them only as a pair: a dataset without an expert return exports neither); import maps them
back, with ``behav_logp`` unknown (NaN) and policy kind ``mixed``.
"""

from __future__ import annotations

import warnings

import numpy as np

from ratiolab.offline.dataset import DatasetError, DatasetMeta, TransitionDataset


def _minari():  # type: ignore[no-untyped-def]
    try:
        import minari
    except ImportError as err:
        raise DatasetError("Minari export/import needs the minari package: pip install 'ratiolab[minari]'") from err
    return minari


def to_minari(data: TransitionDataset, dataset_id: str) -> None:
    """Write ``data`` as the local Minari dataset ``dataset_id`` (e.g. ``"pendulum/medium-v0"``)."""
    minari = _minari()
    from minari.data_collector import EpisodeBuffer

    data.validate(where=f"minari dataset {dataset_id!r}")
    ends = data.terminals | data.truncations
    if not ends[-1]:
        raise DatasetError(f"minari dataset {dataset_id!r}: the last transition ends no episode; Minari needs "
                           "complete episodes (mark it truncated)")
    buffers: list[EpisodeBuffer] = []
    start = 0
    for stop in np.flatnonzero(ends) + 1:
        sl = slice(start, stop)
        buffers.append(EpisodeBuffer(
            id=len(buffers),
            observations=np.concatenate([data.observations[sl], data.next_observations[stop - 1 : stop]]),
            actions=data.actions[sl], rewards=data.rewards[sl].tolist(),
            terminations=data.terminals[sl].tolist(), truncations=data.truncations[sl].tolist(), infos={},
        ))
        start = int(stop)
    ref = data.meta.ref_returns
    with warnings.catch_warnings():  # Minari's reminders to fill in author, e-mail and code link
        warnings.simplefilter("ignore", UserWarning)
        minari.create_dataset_from_buffers(
            dataset_id, buffers, env=data.meta.env_id, eval_env=data.meta.env_id,
            algorithm_name=f"ratiolab {data.meta.policy}", author="ratiolab",
            **({"ref_min_score": ref["random"], "ref_max_score": ref["expert"]} if len(ref) == 2 else {}),
            description=f"ratiolab data collect --policy {data.meta.policy} (seeds {data.meta.seeds})",
            data_format="arrow",
        )


def from_minari(dataset_id: str) -> TransitionDataset:
    """Read the local Minari dataset ``dataset_id`` (no download) as a :class:`TransitionDataset`."""
    minari = _minari()
    try:
        ds = minari.load_dataset(dataset_id, download=False)
    except (FileNotFoundError, ValueError) as err:
        raise DatasetError(f"minari dataset {dataset_id!r} is not available locally ({err})") from err
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("observations", "actions", "rewards", "next_observations",
                                                         "terminals", "truncations", "episode_ids")}
    for i, ep in enumerate(ds.iterate_episodes()):
        obs = np.asarray(ep.observations, np.float32)
        cols["observations"].append(obs[:-1])
        cols["next_observations"].append(obs[1:])
        cols["actions"].append(np.asarray(ep.actions))
        cols["rewards"].append(np.asarray(ep.rewards, np.float32))
        cols["terminals"].append(np.asarray(ep.terminations, bool))
        cols["truncations"].append(np.asarray(ep.truncations, bool))
        cols["episode_ids"].append(np.full(len(obs) - 1, i, np.int64))
    arrays = {k: np.concatenate(v) for k, v in cols.items()}
    discrete = arrays["actions"].ndim == 1 and arrays["actions"].dtype.kind in "iu"
    arrays["actions"] = arrays["actions"].astype(np.int64 if discrete else np.float32)
    meta_ref = {"random": ds.storage.metadata.get("ref_min_score"), "expert": ds.storage.metadata.get("ref_max_score")}
    env_spec = ds.spec.env_spec
    env_id = env_spec.id if env_spec is not None else ""
    meta = DatasetMeta(env_id=env_id, policy="mixed", seeds=[], steps=len(arrays["rewards"]), source=dataset_id,
                       discrete=discrete, ref_returns={k: float(v) for k, v in meta_ref.items() if v is not None})
    data = TransitionDataset(**arrays, behav_logp=np.full(len(arrays["rewards"]), np.nan, np.float32), meta=meta)
    data.validate(where=f"minari dataset {dataset_id!r}")
    return data
