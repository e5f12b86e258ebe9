"""Topic administration the CLI and the tests need: create a topic with N partitions.

Production topics are normally created by the platform team; ``saewatch produce --partitions``
and the test suite create theirs explicitly instead of relying on broker auto-creation (which
makes one partition and races with the first consumer's subscription).
"""

from __future__ import annotations

import logging

from kafka.admin import KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError

from saewatch.config import KafkaSettings
from saewatch.source.client import client_options, redact
from saewatch.source.retry import connect_with_retry
from saewatch.source.stats import SourceStats

logger = logging.getLogger(__name__)

# Waiting for every partition to have a leader avoids a consumer seeing a partial topic.
CREATE_TIMEOUT_MS = 30_000


def ensure_topics(
    kafka: KafkaSettings,
    partitions: dict[str, int],
    *,
    replication_factor: int = 1,
    timeout_s: float | None = 60.0,
) -> list[str]:
    """Create each topic of ``partitions`` (name -> partition count) unless it exists.

    Returns the names that were created. Existing topics are left as they are (their partition
    count is not changed).
    """
    opts = client_options(kafka)
    logger.debug("admin client %s", redact(opts))
    admin = connect_with_retry(
        lambda: KafkaAdminClient(**opts), kafka, SourceStats(), timeout_s=timeout_s
    )
    try:
        existing = set(admin.list_topics())
        missing = {name: n for name, n in partitions.items() if name not in existing}
        if not missing:
            return []
        spec = {
            name: {"num_partitions": n, "replication_factor": replication_factor}
            for name, n in missing.items()
        }
        try:
            admin.create_topics(spec, timeout_ms=CREATE_TIMEOUT_MS, wait_for_metadata=True)
        except TopicAlreadyExistsError:
            logger.info("topics %s were created concurrently", ", ".join(missing))
        for name, n in missing.items():
            logger.info("created topic %s with %d partition(s)", name, n)
        return sorted(missing)
    finally:
        admin.close()
