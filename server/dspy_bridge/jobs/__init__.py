"""Jobs: evaluation, optimization and variable search (DESIGN §4)."""
