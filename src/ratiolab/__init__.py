"""ratiolab: policy optimisation with off-policy data and exact importance-ratio semantics."""

__version__ = "0.1.0"
