"""Errors of the export stage."""

from saewatch.errors import SaewatchError


class ExportError(SaewatchError):
    """Something in the export stage failed."""
