"""Extract stage: which clauses of a judgment belong in its summary."""
