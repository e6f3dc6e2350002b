"""Preference losses over response pairs: ``compute(name, batch, **params) -> LossOutput``.

A :class:`PreferenceBatch` holds ``B`` pairs (chosen / rejected, or two scored samples); every module of
this package registers its losses in :data:`PREFERENCE_LOSSES` on import.
"""

from ratiolab.preference import brain, dpo, p3o  # noqa: F401
from ratiolab.preference.batch import PreferenceBatch
from ratiolab.preference.core import PREFERENCE_LOSSES, compute

__all__ = ["PREFERENCE_LOSSES", "PreferenceBatch", "compute"]
