"""Errors of the state stage."""

from saewatch.errors import SaewatchError


class StateError(SaewatchError):
    """Something in the state stage failed."""


class EncoderMismatchError(StateError):
    """A batch comes from a different encoder (or d_sae) than the state; start a new state dir."""


class InvalidCodesError(StateError):
    """A batch has feature ids outside [0, d_sae); the encoder is broken, nothing was counted."""


class IncompatibleStateError(StateError):
    """Two states cannot be merged (different encoder, d_sae or settings); align them first."""


class SnapshotFormatError(StateError):
    """A snapshot on disk has an unknown format version or is damaged; move it aside or migrate."""


class UnknownKeyError(StateError):
    """No documents were seen for the requested model_id/model_version/field/window."""


class TooManyFeaturesError(StateError, ValueError):
    """A co-occurrence query named more features than one presence mask holds; split it."""


class InvalidStrataError(StateError, ValueError):
    """Token-length stratum edges must be non-negative and increase strictly."""
