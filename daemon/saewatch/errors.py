"""The root of saewatch's exceptions, and those of the top-level modules (configuration, the
features codec, the encode role's publishing, offsets); each stage adds one-line subclasses in
its own ``exceptions.py``.

Messages say what to do, not only what went wrong.
"""


class SaewatchError(Exception):
    """Root of every error saewatch raises on purpose."""


class ConfigError(SaewatchError):
    """The configuration is invalid; the message names the setting and how to fix it (exit 2)."""


class KafkaSecurityError(ConfigError):
    """The Kafka broker refused the client's security settings (TLS, SASL): retrying cannot
    help, so it is a configuration error; the message names the ``kafka.*`` setting to fix.

    >>> isinstance(KafkaSecurityError("kafka.ssl_cafile: ..."), ConfigError)  # exit 2
    True
    """


class CodecError(SaewatchError):
    """A features message cannot be decoded; it goes to the features dead-letter topic."""


class PublishError(SaewatchError):
    """Features messages were not acknowledged; the input is not committed (retried on restart)."""


class OffsetRegressionError(SaewatchError):
    """An offset went backwards (a commit below one already made, or a tracker asked to move
    back): a bug in the caller or the source; restart from the latest snapshot."""


class BehaviourInputError(SaewatchError):
    """A behaviour's examples file is missing, unreadable or empty; the message names it."""


class LLMError(SaewatchError):
    """The optional LLM endpoint (``labels.llm``) failed; the message says what to check. The
    daemon logs and counts it and goes on without the LLM's text."""
