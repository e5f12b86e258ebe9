"""Errors of the source stage; each message says what to do."""

# OffsetRegressionError is one class, shared with the checkpoint's offset tracker; re-exported
# here for the source's callers.
from saewatch.errors import KafkaSecurityError as KafkaSecurityError
from saewatch.errors import OffsetRegressionError as OffsetRegressionError
from saewatch.errors import SaewatchError


class SourceError(SaewatchError):
    """Something in the source stage failed."""


class BrokerUnavailableError(SourceError):
    """No Kafka broker answered; check kafka.bootstrap_servers and that the broker is up."""


class DeadLetterError(SourceError):
    """A dead letter could not be delivered; its offset is not committed (it will be re-read)."""


class SourceClosedError(SourceError):
    """The source was closed (or asked to stop) before the call completed; open a new one."""


class ReplayFileError(SourceError):
    """A JSONL replay file is missing or unreadable; check the path (source.path / --file)."""


class ProduceError(SourceError):
    """Publishing events failed; check the broker and the topic (the message names both)."""


# The broker's refusals are configuration errors (exit 2, one line), not source failures: they are
# not SourceError, so no command treats them as a broker that may come back.
class KafkaTlsError(KafkaSecurityError):
    """TLS with the broker failed for good: fix the kafka.ssl_* setting or security_protocol named."""


class KafkaAuthError(KafkaSecurityError):
    """The broker refused the SASL login: fix the kafka.sasl_* setting or security_protocol named."""
