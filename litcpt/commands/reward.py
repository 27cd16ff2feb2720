"""``litcpt reward``: train a reward model (one-score head on a litgpt backbone) on preference pairs.

The run itself is :func:`litcpt.training.reward.setup`, which ``litcpt demo --part reward`` runs too.
"""

from __future__ import annotations

from litcpt.training.reward import default_steps, resolve_head_token, setup

__all__ = ["default_steps", "resolve_head_token", "setup"]
