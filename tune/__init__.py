"""Ray Tune: search space, trainable, selection and export of the best model (thin over radiogenomics.training)."""
