"""What a run or a study reports: the run's own outputs as it trains (``metrics``: metrics,
TensorBoard, progress, ``status.json``, videos), scores normalised as in the paper
(``scores``: Table 1, per-game tables), figures (``plot``: learning curves, bars) and the
run-directory reader both use (``rundirs``)."""
