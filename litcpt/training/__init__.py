"""The runnable training setups below the commands: the Trainer harness and its arguments, the pretrain, reward and
anneal runs, carried state, recipes read outside a run and the dry run."""
