"""saewatch: watch deployed LLMs and say *what* changed, in sparse-autoencoder features.

Data flows one way: ``source`` (Kafka, file replay) -> ``encode`` (model + SAE -> sparse
feature codes) -> ``state`` (counts, windows, co-occurrence, clusters, retrieval) -> ``diff``
(statistics between versions and windows) -> ``export`` (Prometheus, HTTP API, report page).
Stages exchange only the frozen types of :mod:`saewatch.models`.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
