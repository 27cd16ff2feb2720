"""``litcpt pretrain``: pretrain or continue pretraining a litgpt model (the signature is the recipe schema).

The run itself is :func:`litcpt.training.pretrain.setup`, which ``litcpt anneal`` and ``litcpt demo`` run too.
"""

from __future__ import annotations

from litcpt.training.pretrain import setup

__all__ = ["setup"]
