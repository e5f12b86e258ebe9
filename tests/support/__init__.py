"""What the tests and the benchmarks share to drive real parts: a Kafka broker from
``deploy/kafka`` (:mod:`tests.support.kafka`), a Prometheus server (:mod:`tests.support.prometheus`),
``saewatch`` daemons started, scraped and killed as processes (:mod:`tests.support.app`) and tiny
random models and SAEs (:mod:`tests.support.encode`).

It lives in the checkout, not in the product package: it finds ``deploy/`` beside ``tests/``, and an
installed ``saewatch`` has neither. Importable as ``tests.support`` with the repository root on
``sys.path`` (pytest's ``pythonpath``; ``python -m benchmarks...`` from the root).
"""
