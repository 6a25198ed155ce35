"""The run layer: make an env, train an agent into a run directory, run episodes, collect demonstrations,
evaluate, record videos and the env gallery. What ``symgym train``, ``eval`` and ``demos`` do lives here."""
