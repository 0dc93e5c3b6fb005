"""Models: one file each, a ``Model`` (training set, inputs, search space, gates)."""
