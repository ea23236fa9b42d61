"""Radiogenomics core library: cohorts, synthetic data, radiomics, models, masking. No Ray Serve, no gRPC."""
__version__ = "0.1.0"
