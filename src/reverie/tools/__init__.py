"""Tools beside the agent: ``timing`` (``reverie bench``: update, policy and env timings, FLOPs)
and ``params`` (``reverie config --params``: parameter counts of a preset on its task's spaces)."""
