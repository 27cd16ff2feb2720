"""The runnable entry points that several commands share: a pretrain run and a reward-model run.

``litcpt pretrain`` and ``litcpt reward`` are these functions (their signatures are the recipe schema); ``litcpt
anneal`` and ``litcpt demo`` run them too, so they live below :mod:`litcpt.commands`, where no command imports
another.
"""
