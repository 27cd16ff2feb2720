"""The parts of ``litcpt demo`` (:mod:`litcpt.commands.demo`): the runs they share (:mod:`.runtime`), the reward-model
part (:mod:`.reward`) and the opt-in ``beyond`` part (:mod:`.beyond`)."""
