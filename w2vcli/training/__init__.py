"""Training: the loop, its configs, schedules, masking, run directories and where it runs."""
