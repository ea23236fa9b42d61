"""Synthetic cohorts with planted biology, so the pipeline can be checked where the truth is known."""

from radiogenomics.synth.generator import SynthConfig, generate

__all__ = ["SynthConfig", "generate"]
