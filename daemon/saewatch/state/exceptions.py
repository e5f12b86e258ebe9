"""Errors of the state stage."""

from saewatch.errors import SaewatchError


class StateError(SaewatchError):
    """Something in the state stage failed."""
