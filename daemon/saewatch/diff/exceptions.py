"""Errors of the diff stage."""

from saewatch.errors import SaewatchError


class DiffError(SaewatchError):
    """Something in the diff stage failed."""


class CountsMismatchError(DiffError):
    """Baseline and candidate counts have different d_sae; compare counts of one encoder only."""
