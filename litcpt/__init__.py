"""litcpt: continual pretraining, reward models, DPO and RewardBench-style evaluation for Lightning / LitGPT."""

from litcpt._compat import check_versions as _check_versions

_check_versions()
