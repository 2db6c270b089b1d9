"""What a run or a study reports, read from run directories: scores normalised as in the
paper (``scores``: Table 1, per-game tables), figures (``plot``: learning curves, bars) and
the run-directory reader both use (``rundirs``)."""
