"""Rollout: turn task problems into scored experience with an engine."""

from ratiolab.rollout.experience import Experience, collect

__all__ = ["Experience", "collect"]
