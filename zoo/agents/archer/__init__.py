"""ArCHer (hierarchical multi-turn RL for language agents). So far: its losses (``losses``); the agent, the
CHAI and filtered-BC baselines come next (issue 7)."""
