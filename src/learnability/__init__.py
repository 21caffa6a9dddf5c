"""learnability: active data selection ("Bad Students Make Great Teachers", Evans et al. 2024)."""

__version__ = "0.1.0"
