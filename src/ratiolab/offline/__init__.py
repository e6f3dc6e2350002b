"""Offline RL: transition datasets collected by ratiolab's own gym policies, and offline learners on them."""
