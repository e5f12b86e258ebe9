"""``saewatch backtest``: replay a file of events through encode → state → diff and report,
look by look, when drift would have been flagged (:mod:`saewatch.backtest.replay`), with codes
cached by text on disk (:mod:`saewatch.backtest.cache`) and a typed output
(:mod:`saewatch.backtest.models`, the schema of docs/backtest.schema.json).

Wiring like :mod:`saewatch.app`: it composes the stages through their contracts and is no stage
itself. Importing it loads no model library; the encoder is built by the caller.
"""

from saewatch.backtest.models import BacktestResult, backtest_schema
from saewatch.backtest.replay import BacktestInputError, BacktestOptions, run_backtest

__all__ = ["BacktestInputError", "BacktestOptions", "BacktestResult", "backtest_schema",
           "run_backtest"]
