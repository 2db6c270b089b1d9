"""Tools beside the agent: ``bench`` (``reverie bench``: update, policy and env timings, FLOPs)
and ``params`` (``reverie config --params``: parameter counts of a preset on its task's spaces)."""
