"""Errors of the source stage."""

from saewatch.errors import SaewatchError


class SourceError(SaewatchError):
    """Something in the source stage failed."""
