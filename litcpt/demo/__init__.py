"""What ``litcpt demo`` (:mod:`litcpt.commands.demo`) runs (:func:`.run.run_demo`): the continual-pretraining part
(:mod:`.cpt`, its runs in :mod:`.scenarios`), the reward-model part (:mod:`.reward`), the opt-in ``beyond`` part
(:mod:`.beyond`) and what they share (:mod:`.runtime`)."""
