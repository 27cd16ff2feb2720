"""DPO's precomputed reference: ``log π_ref`` of every train and val pair, computed once before training.

:class:`ReferenceLogps` holds the values per split, keyed by the pair ``index`` of the batch, with the
:func:`reference_meta` they were computed from, so that ``<out_dir>/ref_logps.pt`` is reused only for the same
reference weights and the same tokenised pairs. :class:`ReferenceLogpsModule` computes them with ``Trainer.predict``
(same strategy as training; Trainer from :func:`litcpt.runtime.inference.predict_trainer`) and gathers every rank's
pairs
with RewardBench's ordered gather (:func:`litcpt.runtime.inference.gather_in_order`: each expected pair exactly once).
:class:`litcpt.models.dpo.DPOModel` then never builds the reference model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from litgpt import Config
from torch import Tensor

from litcpt._private import attached_trainer
from litcpt.losses import preference as losses
from litcpt.models.base import GPTModule
from litcpt.models.logprobs import model_token_logps, sequence_logps
from litcpt.runtime.checkpoint import UntrustedFileError, atomic_torch_save, load_torch_file
from litcpt.runtime.inference import gather_in_order, gather_objects

__all__ = ["REF_LOGPS_FILE", "ReferenceLogps", "ReferenceLogpsModule", "dataset_fingerprint", "reference_meta"]

REF_LOGPS_FILE = "ref_logps.pt"


def dataset_fingerprint(dataset: Any) -> str | None:
    """sha256 of a :class:`~litcpt.data.preference.batching.PreferenceDataset`'s token ids (None for other
    datasets)."""
    items = getattr(dataset, "items", None)
    if items is None:
        return None
    digest = hashlib.sha256()
    for item in items:
        digest.update(f"{item.index}:{item.chosen_prompt_length}:{item.rejected_prompt_length}:".encode())
        digest.update(item.chosen_ids.numpy().tobytes())
        digest.update(b"|")
        digest.update(item.rejected_ids.numpy().tobytes())
    return digest.hexdigest()


@dataclass
class ReferenceLogps:
    """Reference log-probs per split (``"train"``, ``"val"``): ``tables[split][index] = (chosen, rejected)``.

    ``meta`` says what they were computed from (reference dir, ``average_logps``, data fingerprint, sizes), so a
    cache file is reused only for the same reference and the same tokenised pairs.
    """

    tables: dict[str, Tensor]
    meta: dict[str, Any] = field(default_factory=dict)

    def lookup(self, split: str, index: Tensor) -> tuple[Tensor, Tensor]:
        """(chosen, rejected) reference log-probs ``[B]`` of the pairs ``index`` (on ``index``'s device)."""
        if split not in self.tables:
            raise ValueError(
                f"reference log-probs: no precomputed values for the {split!r} pairs (have {sorted(self.tables)})"
            )
        table = self.tables[split]
        if table.device != index.device:
            table = self.tables[split] = table.to(index.device)
        rows = table[index.long()]
        return rows[:, 0], rows[:, 1]

    def save(self, path: Path | str) -> Path:
        atomic_torch_save(
            {"format": 1, "meta": self.meta, "tables": {k: v.cpu() for k, v in self.tables.items()}}, path
        )
        return Path(path)

    @classmethod
    def load(cls, path: Path | str) -> ReferenceLogps:
        try:
            raw = load_torch_file(path, field="reference log-probs", mmap=False)
            return cls(tables=dict(raw["tables"]), meta=dict(raw["meta"]))
        except UntrustedFileError:
            raise
        except Exception as err:
            raise ValueError(f"{path}: not a reference log-prob cache ({type(err).__name__}: {err})") from None


def reference_meta(
    ref_dir: Path, *, average_logps: bool, datasets: Mapping[str, Any], ld_alpha: float | None = None
) -> dict[str, Any]:
    """What a :class:`ReferenceLogps` depends on: the reference weights, ``average_logps`` (and LD-DPO's
    ``ld_alpha``) and the tokenised data."""
    weights = Path(ref_dir) / "lit_model.pth"
    stat = weights.stat()
    meta = {
        "reference": str(Path(ref_dir).resolve()),
        "weights": [stat.st_size, stat.st_mtime_ns],
        "average_logps": bool(average_logps),
        "data": {split: [len(ds), dataset_fingerprint(ds)] for split, ds in datasets.items() if ds is not None},
    }
    if ld_alpha is not None:
        meta["ld_alpha"] = float(ld_alpha)
    return meta


@dataclass(frozen=True)
class _Row:
    """One pair's reference log-probs, as gathered from the ranks."""

    index: int
    chosen: float = float("nan")
    rejected: float = float("nan")


class ReferenceLogpsModule(GPTModule):
    """``Trainer.predict`` over ``[train_loader, val_loader]`` with the frozen reference: fills :attr:`result`
    (a :class:`ReferenceLogps`, identical on every rank) and writes it to ``cache_path`` on rank 0.

    Uses :func:`sequence_logps`, the same function as the on-the-fly reference in :class:`DPOModel`.
    """

    hparams_ignore = ("expected",)  # pair indices of every split: not a hyperparameter

    def __init__(
        self,
        config: Config,
        *,
        checkpoint_dir: Path,
        average_logps: bool = False,
        split_names: Sequence[str] = ("train", "val"),
        sizes: Mapping[str, int] | None = None,
        meta: Mapping[str, Any] | None = None,
        cache_path: Path | None = None,
        ld_alpha: float | None = None,
        expected: Mapping[str, Sequence[int]] | None = None,
        fused_head: bool = True,
        defer_init: bool = False,
    ) -> None:
        super().__init__(config, checkpoint_dir=checkpoint_dir, fused_head=fused_head, defer_init=defer_init)
        # pair indices each split must have (pairs dropped by truncation="drop" leave gaps in the index range)
        self.expected = {split: torch.as_tensor(list(v), dtype=torch.long) for split, v in (expected or {}).items()}
        self.model.eval().requires_grad_(False)
        self.average_logps = average_logps
        self.ld_alpha = ld_alpha
        self.split_names = tuple(split_names)
        self.sizes = dict(sizes or {})
        self.meta = dict(meta or {})
        self.cache_path = cache_path
        self._rows: dict[int, list[tuple[Tensor, Tensor, Tensor]]] = {}
        self.result: ReferenceLogps | None = None

    def configure_optimizers(self) -> Any:  # predict only
        return None

    def on_predict_epoch_start(self) -> None:
        self._rows = {i: [] for i in range(len(self.split_names))}

    @torch.no_grad()
    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        if self.ld_alpha is not None:  # LD-DPO: the same reweighted sums as DPOModel
            per_token, _ = model_token_logps(self.model, batch["input_ids"], batch["response_mask"],
                                             fused_head=self.fused_head)
            logps = losses.ld_logps(per_token, batch["response_mask"][:, 1:], self.ld_alpha)
        else:
            logps = sequence_logps(self.model, batch["input_ids"], batch["response_mask"], average=self.average_logps,
                                   fused_head=self.fused_head)
        half = logps.shape[0] // 2
        keep = ~batch["is_duplicate"].bool() if "is_duplicate" in batch else torch.ones(half, dtype=torch.bool)
        keep = keep.to(logps.device)
        self._rows.setdefault(dataloader_idx, []).append(
            (
                batch["index"].to(logps.device)[keep].cpu(),
                logps[:half][keep].float().cpu(),
                logps[half:][keep].float().cpu(),
            )
        )

    def on_predict_epoch_end(self) -> None:
        world_size = self.trainer.world_size if attached_trainer(self) is not None else None
        tables: dict[str, Tensor] = {}
        for i, split in enumerate(self.split_names):
            local = [
                _Row(k, c, r)
                for index, chosen, rejected in self._rows.get(i, [])
                for k, c, r in zip(index.tolist(), chosen.tolist(), rejected.tolist())
            ]
            if split in self.expected:  # every expected pair exactly once (pairs dropped by truncation leave gaps)
                rows = gather_in_order(
                    local,
                    [_Row(k) for k in self.expected[split].tolist()],
                    world_size,
                    f"{split} pairs",
                    what="reference log-probs",
                )
            else:
                rows = [row for part in gather_objects(local, world_size) for row in part]
            size = self.sizes.get(split, max((row.index for row in rows), default=-1) + 1)
            table = torch.full((size, 2), float("nan"))
            if rows:
                table[torch.tensor([row.index for row in rows])] = torch.tensor(
                    [[row.chosen, row.rejected] for row in rows]
                )
            missing = torch.isnan(table).any(-1).nonzero().flatten()
            if split not in self.expected and missing.numel():
                raise RuntimeError(
                    f"reference log-probs: {missing.numel()} {split} pairs were not scored "
                    f"(first index {int(missing[0])})"
                )
            tables[split] = table
        self.result = ReferenceLogps(tables=tables, meta=self.meta)
        if self.cache_path is not None and self.global_rank == 0:
            self.result.save(self.cache_path)
