"""Errors of the data sets; each message says what to do."""

from saewatch.errors import SaewatchError


class DatasetError(SaewatchError):
    """The AlpacaEval data is missing or malformed; set SAEWATCH_DATA_DIR or check the name."""
