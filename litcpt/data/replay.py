"""``Replay``: continual-pretraining data that mixes a small, exact share of old data into new data.

Ibrahim et al. (2024, arXiv 2403.08763) keep forgetting in check when switching from an old
corpus D1 to a new corpus D2 by *replaying* a small fraction (e.g. 1-5 %) of D1 inside D2. The
mix here is at the level of fixed-length token blocks, so the sample fraction equals the token
fraction, and it is exact for every prefix of the stream (two-level greedy blend, see
:mod:`litcpt.data.mixing`): after ``N`` samples the number of replay samples is within one of
``fraction * N``.

Compute-equivalent mode (the paper's setting): replay tokens count toward the run's token budget
(``--train.max_tokens``), so the new data's share shrinks to ``1 - fraction`` of the budget.
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import torch
from litgpt.data import DataModule
from torch.utils.data import DataLoader

from litcpt.data.mixing.blend import Mixer, _as_fraction
from litcpt.data.mixing.stream import BlockStream, StreamLoader
from litcpt.data.text.blocks import RoundRobinBlocks, TokenBlocks
from litcpt.data.text.datamodule import ResumableStreamMixin, TextFiles, load_tokenizer
from litcpt.schedules.stage import LRStage

__all__ = ["Replay"]


class Replay(ResumableStreamMixin, DataModule):
    """New data plus an exact ``fraction`` of replayed old data, as one resumable block stream.

    Args:
        new: the new corpus (D2): a :class:`~litcpt.data.TextFiles`, or a path / ``"hf:<dataset>"``
            string (turned into ``TextFiles`` with this module's ``val_split_fraction``,
            ``text_field``, ``seed``, ``cache_dir``, ``hf_kwargs``).
        replay: the old corpus (D1), or a list of old corpora, in the same forms.
        fraction: share of training samples (= tokens) drawn from replay sources, in [0, 1).
            ``0`` is the no-replay baseline (still validates on every source).
        weights: split of the replay share between replay sources (normalised, all > 0). Default:
            proportional to each replay source's number of training tokens.
        on_exhausted: when a replay source has given all its training blocks, ``"cycle"``
            reshuffles it and goes on (warning once per new epoch), ``"error"`` raises.
        seed: seed of the per-source, per-epoch shuffles (and of the validation split of sources
            given as paths).
        num_workers: dataloader worker processes (the stream does not depend on it).
        val_split_fraction, text_field, cache_dir, hf_kwargs: used for sources given as strings;
            ``cache_dir`` is also given to ``TextFiles`` sources that have none.
        phases: data phases: ``[{tokens: N, fraction: f}, ...]``: from training token ``N`` on, the replay share is
            ``f`` (before the first phase: ``fraction``). The replay count stays within 1/2 of its target
            ``sum_j f_j x tokens of phase j so far`` after every prefix, across boundaries
            (:mod:`litcpt.data.mixing.phases`).
            ``{lr_below: x, fraction: f}`` starts a phase at the first optimizer step from which the scheduled LR
            stays below ``x`` (needs a Trainer with ``max_steps`` and the run's LR stage, :meth:`set_lr_stage`, which
            ``litcpt pretrain`` gives): computed from the pure schedule before the first batch, so it is a token
            count like the others.
        max_repetition: most epochs any source (a number) or the named sources (``{name: epochs}``) may be used in
            this run (known under a Trainer from ``max_steps``): more is an error (``on_repetition="warn"``: a warning).

    Validation: one held-out set per source, named by ``val_names`` (each ``TextFiles``' ``name``,
    else ``"new"``, ``"replay0"``, ``"replay1"``, ...). Under a Lightning ``Trainer``
    ``val_dataloader()`` returns one loader per source; elsewhere (``litgpt pretrain``, which
    expects a single loader) it returns one loader interleaving the sources' held-out blocks;
    :meth:`val_dataloaders` always returns the list.
    """

    def __init__(
        self,
        new: TextFiles | str | Path,
        replay: TextFiles | str | Path | list[TextFiles | str | Path],
        fraction: float = 0.05,
        weights: list[float] | None = None,
        on_exhausted: Literal["cycle", "error"] = "cycle",
        seed: int = 42,
        num_workers: int = 0,
        val_split_fraction: float = 0.05,
        text_field: str = "text",
        cache_dir: str | Path | None = None,
        hf_kwargs: dict[str, Any] | None = None,
        phases: list[dict[str, float]] | None = None,
        max_repetition: float | dict[str, float] | None = None,
        on_repetition: Literal["error", "warn"] = "error",
    ) -> None:
        super().__init__()
        from litcpt.data.mixing.phases import check_phases

        self.phases = [dict(p) for p in phases] if phases else None
        if self.phases:
            check_phases(self.phases)
        self.max_repetition = _check_repetition(max_repetition)
        if on_repetition not in ("error", "warn"):
            raise ValueError(f"Replay: on_repetition must be 'error' or 'warn', got {on_repetition!r}")
        self.on_repetition = on_repetition
        try:
            frac = _as_fraction(fraction, "Replay: fraction")
        except ValueError as err:
            raise ValueError(f"Replay: fraction must be a number in [0, 1), got {fraction!r}") from err
        if frac >= 1:
            raise ValueError(f"Replay: fraction must be in [0, 1), got {fraction!r}")
        if on_exhausted not in ("cycle", "error"):
            raise ValueError(f"Replay: on_exhausted must be 'cycle' or 'error', got {on_exhausted!r}")
        if int(num_workers) < 0:
            raise ValueError(f"Replay: num_workers must be >= 0, got {num_workers}")
        replay_list = list(replay) if isinstance(replay, (list, tuple)) else [replay]
        if not replay_list:
            raise ValueError("Replay: replay needs at least one source")
        if weights is not None:
            weights = list(weights)
            if len(weights) != len(replay_list):
                raise ValueError(f"Replay: weights has {len(weights)} entries for {len(replay_list)} replay source(s)")
            for k, w in enumerate(weights):
                if _as_fraction_or_none(w) is None or float(w) <= 0:
                    raise ValueError(f"Replay: weights[{k}] must be a positive number, got {w!r}")
        self.fraction = float(fraction)
        self.weights = weights
        self.on_exhausted = on_exhausted
        self.seed = int(seed)
        self.num_workers = int(num_workers)
        self.val_split_fraction = float(val_split_fraction)
        self.text_field = text_field
        self.cache_dir = cache_dir
        self.hf_kwargs = dict(hf_kwargs) if hf_kwargs else None

        self.new = self._as_source(new, "new")
        self.replay = [self._as_source(s, f"replay[{i}]") for i, s in enumerate(replay_list)]
        names = self.val_names
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"Replay: source names must be unique, {duplicates} used twice (set TextFiles(name=...))")

        self.tokenizer: Any = None
        self.batch_size = 1
        self.max_seq_length: int | None = None
        self._ready = False
        self._loader: StreamLoader | None = None
        self._resume = (0, 0)
        self._epochs_seen: list[int] = []
        self.lr_stage: LRStage | None = None

    def _as_source(self, source: Any, what: str) -> TextFiles:
        if isinstance(source, TextFiles):
            if source.cache_dir is None:
                source.cache_dir = self.cache_dir
            return source
        if isinstance(source, (str, Path)):
            return TextFiles(
                source,
                val_split_fraction=self.val_split_fraction,
                text_field=self.text_field,
                seed=self.seed,
                cache_dir=self.cache_dir,
                hf_kwargs=self.hf_kwargs,
            )
        raise ValueError(f"Replay: {what} must be a TextFiles, a path or 'hf:<dataset>', got {type(source).__name__}")

    def __repr__(self) -> str:
        return f"Replay(new={self.new!r}, replay={self.replay!r}, fraction={self.fraction})"

    @property
    def sources(self) -> list[TextFiles]:
        """All sources, new first."""
        return [self.new, *self.replay]

    @property
    def val_names(self) -> list[str]:
        """One name per source / validation loader: new first, then the replay sources."""
        return [self.new.name or "new"] + [s.name or f"replay{i}" for i, s in enumerate(self.replay)]

    def connect(self, tokenizer: Any = None, batch_size: int = 1, max_seq_length: int | None = -1,
                **kwargs: Any) -> None:
        """Connect every source with the same tokenizer (or dir), micro-batch size and block size."""
        self.tokenizer = load_tokenizer(tokenizer)
        for source in self.sources:
            source.connect(self.tokenizer, batch_size, max_seq_length)
        self.batch_size = self.new.batch_size
        self.max_seq_length = self.new.max_seq_length
        self._ready = False

    def prepare_data(self) -> None:
        """Tokenise and cache every source (rank 0 first under litgpt)."""
        for source in self.sources:
            source.prepare_data()

    def setup(self, stage: str = "") -> None:
        """Open every source and check that they are compatible."""
        for source in self.sources:
            source.setup(stage)
        names = self.val_names
        ref = self.new.token_file().tokenizer
        for name, source in zip(names, self.sources):
            if source.token_file().tokenizer != ref:
                raise ValueError(
                    f"Replay: source {name!r} was tokenised with another tokenizer than source {names[0]!r}"
                )
            if source.max_seq_length != self.max_seq_length:
                raise ValueError(
                    f"Replay: source {name!r} has block size {source.max_seq_length}, expected {self.max_seq_length}"
                )
        self._ready = True

    def _ensure(self) -> None:
        if not self._ready:
            self.setup()

    @property
    def needs_lr_stage(self) -> bool:
        """Whether a phase starts when the LR falls below a threshold (``lr_below``): then :meth:`set_lr_stage`."""
        return bool(self.phases) and any("lr_below" in p for p in self.phases)

    def set_lr_stage(self, stage: LRStage | None) -> None:
        """Give the module the LR stage of the run it is trained in, before ``trainer.fit``: the resolved schedule,
        the global step the stage starts at and the schedule units per step (:class:`~litcpt.schedules.LRStage`).
        ``lr_below`` phases start at the first optimizer step from which that schedule stays below their threshold.

        ``litcpt pretrain`` (and every run of the Trainer harness) calls it with the stage its LR callback will train
        with, for a fresh run, a resumed one, a carried schedule or an anneal. Under your own ``Trainer``, call it
        with the LR callback's :meth:`~litcpt.callbacks.LRScheduleCallback.lr_stage`::

            data.set_lr_stage(lr.lr_stage(max_steps=1000, peak_lr=3e-4, ckpt_path=ckpt_path))
            Trainer(max_steps=1000, callbacks=[lr]).fit(model, data, ckpt_path=ckpt_path)
        """
        if stage is not None and not isinstance(stage, LRStage):
            raise ValueError(f"Replay: set_lr_stage expects a litcpt.schedules.LRStage or None, got "
                             f"{type(stage).__name__}")
        self.lr_stage = stage

    def replay_weights(self) -> list[float]:
        """Weights of the replay sources (user weights, else training-token counts), normalised."""
        self._ensure()
        raw = self.weights if self.weights is not None else [len(s.train_blocks()) for s in self.replay]
        total = float(sum(raw))
        return [float(w) / total for w in raw]

    def mixer(self) -> Mixer:
        """The two-level blend of this module (new vs. replay, then between replay sources); with ``phases``, a
        :class:`~litcpt.data.mixing.phases.PhasedMixer`."""
        self._ensure()
        raw = self.weights if self.weights is not None else [len(s.train_blocks()) for s in self.replay]
        if self.phases:
            from litcpt.data.mixing.phases import PhasedMixer, lr_phase_starts, parse_phases

            lr_start = None
            trainer = getattr(self, "trainer", None)
            if trainer is not None and self.lr_stage is not None and self.needs_lr_stage:
                per_step = int(trainer.accumulate_grad_batches) * int(self.batch_size) * int(trainer.world_size)
                lr_start = lr_phase_starts(self.lr_stage, global_step=int(trainer.global_step),
                                           max_steps=int(trainer.max_steps or -1), position=self.stream_position(),
                                           samples_per_step=per_step)
            schedule = parse_phases(
                self.phases,
                samples_per_token=Fraction(1, int(self.max_seq_length or 1)),
                default_fraction=self.fraction,
                lr_start=lr_start,
            )
            return PhasedMixer(schedule, raw)  # type: ignore[return-value]
        return Mixer(self.fraction, raw)

    def check_repetition(self, total_samples: int) -> list[float]:
        """Epochs of each source used by ``total_samples`` samples; error (or warn) above ``max_repetition``."""
        self._ensure()
        counts = self.mixer().counts_at(int(total_samples))
        sizes = [len(s.train_blocks()) for s in self.sources]
        epochs = [c / n for c, n in zip(counts, sizes)]
        cap = self.max_repetition
        if cap is None:
            return epochs
        if isinstance(cap, dict):
            unknown = sorted(set(cap) - set(self.val_names))
            if unknown:
                raise ValueError(f"Replay: max_repetition names unknown sources {unknown} (sources: {self.val_names})")
        for name, used, count, size in zip(self.val_names, epochs, counts, sizes):
            limit = cap.get(name) if isinstance(cap, dict) else cap
            if limit is not None and used > limit:
                message = (
                    f"Replay: source {name!r} would be used {used:.2f} times ({count} samples of its {size} "
                    f"training blocks) in this run's {total_samples} samples, more than "
                    f"max_repetition={limit:g}: add data, lower its share or raise max_repetition"
                )
                if self.on_repetition == "error":
                    raise ValueError(message)
                warnings.warn(message, UserWarning, stacklevel=2)
        return epochs

    def _has_sources(self) -> bool:
        return self._ready

    def _stream_fingerprint(self) -> dict[str, Any]:
        if not self._ready:
            return {}
        return {
            "sources": [
                [name, len(s.train_blocks()), s.token_file().tokenizer] for name, s in zip(self.val_names, self.sources)
            ],
            "block_size": self.max_seq_length,
            "seed": self.seed,
            "fraction": self.fraction,
            "weights": self.replay_weights(),
            **({"phases": self.phases} if self.phases else {}),
        }

    def train_stream(self) -> BlockStream:
        """The infinite training stream (new + replay blocks, exact shares)."""
        self._ensure()
        strict = [False] + [self.on_exhausted == "error"] * len(self.replay)
        return BlockStream(
            [s.train_blocks() for s in self.sources],
            self.mixer(),
            self.batch_size,
            seed=self.seed,
            names=self.val_names,
            strict=strict,
        )

    def _epochs_at(self, mixer: Mixer, position: int) -> list[int]:
        counts = mixer.counts_at(position)
        sizes = [len(s.train_blocks()) for s in self.sources]
        return [math.ceil(c / n) for c, n in zip(counts, sizes)]

    def _make_epoch_watch(self, mixer: Mixer) -> Any:
        sizes = [len(s.train_blocks()) for s in self.sources]
        names = self.val_names

        def on_position(position: int) -> None:
            counts = mixer.counts_at(position)
            for k in range(1, len(sizes)):
                epoch = math.ceil(counts[k] / sizes[k])
                if epoch > max(1, self._epochs_seen[k]):
                    warnings.warn(
                        f"Replay: source {names[k]!r} exhausted its {sizes[k]} training blocks; reshuffled, now in "
                        f"epoch {epoch} ({counts[k] / sizes[k]:.2f} epochs of it used). Set on_exhausted='error' to "
                        "stop instead.",
                        UserWarning,
                        stacklevel=2,
                    )
                    self._epochs_seen[k] = epoch

        return on_position

    def train_dataloader(self) -> StreamLoader:
        """Infinite, resumable loader of ``LongTensor[B, T + 1]`` mixing new and replay blocks."""
        stream = self.train_stream()
        trainer = getattr(self, "trainer", None)
        if self.max_repetition is not None and trainer is not None and (trainer.max_steps or 0) > 0:
            self.check_repetition(
                int(trainer.max_steps)
                * int(trainer.accumulate_grad_batches)
                * int(self.batch_size)
                * int(trainer.world_size)
            )
        start = self.stream_position()
        self._epochs_seen = self._epochs_at(stream.mixer, start)
        loader = StreamLoader(
            stream,
            num_workers=self.num_workers,
            position_fn=self._trainer_position,
            on_position=self._make_epoch_watch(stream.mixer),
            pin_memory=torch.cuda.is_available(),
        )
        loader.load_state_dict({"consumed_samples": start})
        self._loader = loader
        return loader

    def val_datasets(self) -> list[TokenBlocks]:
        """Held-out blocks of every source, in ``val_names`` order."""
        self._ensure()
        return [s.val_blocks() for s in self.sources]

    def _val_loader(self, dataset: Any) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
        )

    def val_dataloaders(self) -> list[DataLoader]:
        """One validation loader per source (``val_names`` order)."""
        return [self._val_loader(d) for d in self.val_datasets()]

    def val_dataloader(self) -> list[DataLoader] | DataLoader:
        """Per-source loaders under a Lightning ``Trainer``; one interleaved loader otherwise."""
        if getattr(self, "trainer", None) is not None:
            return self.val_dataloaders()
        return self._val_loader(RoundRobinBlocks(self.val_datasets()))


def _check_repetition(value: Any) -> float | dict[str, float] | None:
    def number(v: Any, what: str) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ValueError(f"Replay: {what} must be a positive number of epochs, got {v!r}")
        return float(v)

    if value is None:
        return None
    if isinstance(value, dict):
        return {str(k): number(v, f"max_repetition[{k!r}]") for k, v in value.items()}
    return number(value, "max_repetition")


def _as_fraction_or_none(value: Any) -> Any:
    try:
        return _as_fraction(value, "weight")
    except ValueError:
        return None
