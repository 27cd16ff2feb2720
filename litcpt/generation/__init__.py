"""Corpora sampled from a model: ``litcpt generate-replay`` (:func:`litcpt.generation.run.run`) writes a token file
that ``litcpt.data.Replay`` replays like any old corpus, for continual pretraining when the old data is gone."""
