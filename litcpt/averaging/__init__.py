"""Weight averaging outside the training loop: averages of LitGPT checkpoints (model soups, last-k) and the
per-rank sharded running average the EMA/SWA callbacks keep."""
