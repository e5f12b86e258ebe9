"""Errors of the diff stage."""

from saewatch.errors import SaewatchError


class DiffError(SaewatchError):
    """Something in the diff stage failed."""
