"""Where a job runs: the hot worker's slots (`hot`) and cold worker processes (`cold`)."""
