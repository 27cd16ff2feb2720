"""The LightningModules: the language model (pretraining), the reward model and DPO, and the log-probability math they
share."""
