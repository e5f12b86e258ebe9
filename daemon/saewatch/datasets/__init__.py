"""Real LLM outputs for demos, replays, tests and SAE training (AlpacaEval), and where they live.

The demo sample ships inside the package (``sample/``); a larger corpus is read from
``$SAEWATCH_DATA_DIR``. Stages never read data sets themselves: commands, the demo and tooling
turn them into events (``alpaca_events``) or training texts.
"""

from saewatch.datasets.alpaca import (
    ALPACA_SUBDIR,
    DATA_DIR_ENV,
    SAMPLE_DIR,
    AlpacaRow,
    alpaca_events,
    alpaca_models,
    data_dir,
    data_dirs,
    read_alpaca,
)
from saewatch.datasets.exceptions import DatasetError

__all__ = [
    "ALPACA_SUBDIR",
    "DATA_DIR_ENV",
    "SAMPLE_DIR",
    "AlpacaRow",
    "DatasetError",
    "alpaca_events",
    "alpaca_models",
    "data_dir",
    "data_dirs",
    "read_alpaca",
]
