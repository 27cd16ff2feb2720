"""Deterministic sample streams shared by :class:`~litcpt.data.TextFiles` and :class:`~litcpt.data.Replay`.

The *global stream* is an infinite, seeded sequence of fixed-length token blocks. Position ``p``
of the stream is decided by three pure functions, so any position can be computed without
replaying the stream:

1. :class:`~litcpt.data.mixing.blend.Mixer` picks the source of sample ``p`` and its source-local index ``c`` (how many
   samples that source has given before ``p``) with the greedy blend rule
   (:func:`~litcpt.data.mixing.blend.greedy_blend`).
2. Source-local index ``c`` is in epoch ``c // n`` (``n`` = the source's number of training
   blocks); within an epoch, :func:`~litcpt.data.mixing.permutation.permute` (a keyed Feistel permutation, O(1) memory)
   shuffles
   ``c % n`` with a key derived from ``(seed, source, epoch)``: every epoch is a new shuffle.
3. The source's :class:`~litcpt.data.text.blocks.TokenBlocks` reads the block.

:class:`~litcpt.data.mixing.stream.BlockStream` (an ``IterableDataset``) slices that stream for distributed ranks and
dataloader workers: from start position ``s``, rank ``r`` of ``W`` gets global samples
``s + r, s + r + W, ...``; its ``j``-th micro-batch holds its samples ``j*B .. j*B + B - 1`` and is
produced whole by worker ``j % num_workers``, which is exactly the order in which PyTorch's
``DataLoader`` collects batches from iterable-dataset workers. The global stream therefore does not
depend on the world size or the number of workers. :class:`~litcpt.data.mixing.stream.StreamLoader` (a ``DataLoader``)
counts
the samples handed to its consumer and has ``state_dict``/``load_state_dict`` for exact resume.
"""
