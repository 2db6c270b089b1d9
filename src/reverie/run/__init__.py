"""The training loop: the driver steps the environment, `train` ties env, replay, agent,
logging and checkpoints together, `evaluate` runs evaluation episodes."""
