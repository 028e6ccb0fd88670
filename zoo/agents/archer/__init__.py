"""ArCHer (hierarchical multi-turn RL for language agents) and the baselines of its paper: the agents and
CHAI / filtered BC / offline ArCHer (``agent``), token-level PPO (``token_ppo``), the losses (``losses``) and
the utterance critic with the part that trains it, held by ArCHer, CHAI and offline ArCHer (``critic``)."""
