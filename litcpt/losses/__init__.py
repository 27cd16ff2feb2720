"""Losses as pure functions of tensors: the preference family (Bradley-Terry, DPO and its variants), listwise
reward-model losses, and the stability terms (z-loss, spike test). No Lightning, no models, no tokenizers."""
