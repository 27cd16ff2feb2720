"""litcpt data modules: pretraining text (``TextFiles``), replay mixing (``Replay``), preference pairs."""

from litcpt.data.replay import Replay
from litcpt.data.blend import GreedyBlend, greedy_blend
from litcpt.data.text import TextFiles
from litcpt.data.blocks import TokenBlocks
from litcpt.data.preference import Preference, PreferencePair, load_preference_pairs  # noqa: F401
from litcpt.data.listwise import Listwise

__all__ = ["GreedyBlend", "Listwise", "Preference", "PreferencePair", "Replay", "TextFiles", "TokenBlocks",
           "greedy_blend", "load_preference_pairs"]
