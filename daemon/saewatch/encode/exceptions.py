"""Errors of the encode stage."""

from saewatch.errors import SaewatchError


class EncodeError(SaewatchError):
    """Something in the encode stage failed."""


class ModelLoadError(EncodeError):
    """The language model or tokenizer could not be loaded; the message says what to install."""


class SaeLoadError(EncodeError):
    """The SAE could not be loaded or does not fit the model (width, hook)."""


class HookMappingError(EncodeError):
    """The SAE's ``hook_name`` cannot be mapped onto a layer of this model."""


class LabelsError(EncodeError):
    """A feature labels file is missing, malformed or does not fit the SAE."""


class TrainingError(EncodeError):
    """Training the SAE failed (no data, bad settings)."""


class PresenceThresholdsError(EncodeError):
    """A presence thresholds file is missing, malformed or does not fit the SAE, or
    calibrating one failed; the message says how to recalibrate or turn them off."""
