"""Where a job runs: one contract (`base.Lane`), kept by the hot worker's slots (`hot`)
and by cold worker processes (`cold`)."""
