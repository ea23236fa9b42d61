"""Training and honest model selection: targets, the network, cross-validation, baselines, export."""
