"""Errors of the encode stage."""

from saewatch.errors import SaewatchError


class EncodeError(SaewatchError):
    """Something in the encode stage failed."""
