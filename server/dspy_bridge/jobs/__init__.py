"""Jobs: evaluation, optimization and variable search."""
