"""Shared fixtures: a real Kafka broker for tests marked ``kafka``, and helpers around it.

``kafka_bootstrap`` (session)
    ``host:port`` of a broker. If ``SAEWATCH_KAFKA_BOOTSTRAP`` names a reachable broker it is
    used as is; otherwise ``deploy/kafka/start.sh`` starts one on free ports with its data in a
    temporary folder, and ``deploy/kafka/stop.sh --purge`` stops it when the session ends.
``kafka_cluster`` (session)
    A :class:`tests.support.kafka.KafkaCluster`: create uniquely named topics, produce raw
    messages, read a topic back, and read a group's committed offsets and a topic's end offsets.
``kafka_topic`` (function)
    A fresh topic with one partition (call ``kafka_cluster.create_topic`` for more).

Only tests that ask for these fixtures need Java and the broker; mark them
``@pytest.mark.kafka`` so ``-m "not kafka"`` runs everything else without one. Import helpers
from :mod:`tests.support.kafka`, not from this file (several folders have a conftest.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from saewatch.config import LLMSettings
from tests.support.kafka import KafkaCluster, LocalBroker, broker_answers

TESTS_DATA = Path(__file__).resolve().parent / "data"


def pytest_configure(config: pytest.Config) -> None:
    """Every test reads AlpacaEval outputs from the repository: ``tests/data`` (subsets of the
    models the suite needs), then the demo sample shipped in the package. Set for the whole
    session, so subprocesses (the CLI, the benchmarks' quick modes) see the same data; a
    developer's own ``SAEWATCH_DATA_DIR`` is overridden, never read."""
    os.environ["SAEWATCH_DATA_DIR"] = str(TESTS_DATA)


# Not a doctest module: with --doctest-modules pytest would import this file again by its bare
# name "conftest", which the conftest.py of a subfolder (collected first) already holds.
collect_ignore = ["conftest.py"]


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a running broker: the given one, or one this session starts and stops."""
    given = os.environ.get("SAEWATCH_KAFKA_BOOTSTRAP")
    if given and broker_answers(given):
        yield given
        return
    broker = LocalBroker(tmp_path_factory.mktemp("kafka"))
    try:
        try:
            broker.start()
        except RuntimeError as exc:
            pytest.fail(str(exc), pytrace=False)
        yield broker.bootstrap
    finally:
        broker.stop(purge=True)


@pytest.fixture(scope="session")
def kafka_cluster(kafka_bootstrap: str) -> Iterator[KafkaCluster]:
    """Helpers for the session's broker (see :class:`KafkaCluster`)."""
    cluster = KafkaCluster(kafka_bootstrap)
    yield cluster
    cluster.close()


@pytest.fixture
def kafka_topic(kafka_cluster: KafkaCluster) -> str:
    """A fresh one-partition topic (with its ``.dlq``)."""
    return kafka_cluster.create_topic(1)


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LLMSettings]:
    """``labels.llm`` settings of a real local OpenAI-compatible server (``transformers serve``
    of the embedded SmolLM2), started once per session (:mod:`tests.support.llm_server`)."""
    from tests.support.llm_server import LocalLLMServer, plain_default_model

    server = LocalLLMServer(plain_default_model(), tmp_path_factory.mktemp("llm") / "serve.log")
    try:
        server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server.settings
    finally:
        server.stop()
