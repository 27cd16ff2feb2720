"""litcpt data modules: pretraining text (``TextFiles``), replay mixing (``Replay``), preference pairs."""

from litcpt.data.mixing.blend import GreedyBlend, greedy_blend
from litcpt.data.preference.datamodule import Preference
from litcpt.data.preference.listwise import Listwise
from litcpt.data.preference.pair_loading import load_preference_pairs
from litcpt.data.preference.pair_rows import PreferencePair
from litcpt.data.replay import Replay
from litcpt.data.text.blocks import TokenBlocks
from litcpt.data.text.datamodule import TextFiles

__all__ = ["GreedyBlend", "Listwise", "Preference", "PreferencePair", "Replay", "TextFiles", "TokenBlocks",
           "greedy_blend", "load_preference_pairs"]
