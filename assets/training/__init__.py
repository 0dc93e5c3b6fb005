"""Training sets: one file each, a ``TrainingSet`` (source, features, label, cutoff rule, split)."""
