"""Rebuilds ``tests/data/alpaca_eval/``: the AlpacaEval outputs the suite needs beyond the sample.

The shipped demo sample (``saewatch/datasets/sample/``) holds claude-2.1, claude-2.1_concise and
NullModel in full. The tests also use other models, but never more than these instructions:
the first :data:`FIRST` (``limit=``/``indices=`` selections) and, for the version pairs of
``tests/diff/test_diff_real.py``, the 200 of ``selected_instructions()``; of the other models the
first :data:`FIRST_OTHER`. Each record
keeps its instruction ``index``, so event ids match the full corpus. Run from the project root
with the full corpus beside it (never needed by the suite itself)::

    SAEWATCH_DATA_DIR=../shared/data python tests/data/build_subset.py
"""

from __future__ import annotations

import gzip
import json
import os
import sys
from pathlib import Path

FIRST = 200
# The other models serve held-out texts (12 per model: instructions 0-55) and small streams.
FIRST_OTHER = 60
# Models whose real-data diff tests read the selected instructions too.
PAIR_MODELS = ("gpt4_1106_preview", "gpt4_1106_preview_verbose", "Mistral-7B-Instruct-v0.2",
               "Snorkel-Mistral-PairRM-DPO")
# Held-out evaluation models (training/corpus.py TRAIN_EXCLUDED_MODELS) and other test models.
OTHER_MODELS = ("gpt4_1106_preview_concise", "claude-2.1_verbose", "gpt-4o-2024-05-13",
                "llama-2-13b-chat-hf", "Yi-34B-Chat")
OUT = Path(__file__).resolve().parent / "alpaca_eval"


def main() -> int:
    root = Path(__file__).resolve().parents[2]
    sys.path[:0] = [str(root), str(root / "daemon")]
    from benchmarks.quality.alpaca_codes import selected_instructions

    source = Path(os.environ.get("SAEWATCH_DATA_DIR", root.parent / "shared" / "data"))
    selected = set(selected_instructions().tolist())
    OUT.mkdir(exist_ok=True)
    for model in PAIR_MODELS + OTHER_MODELS:
        with gzip.open(source / "alpaca_eval" / f"{model}.json.gz", "rt", encoding="utf-8") as fh:
            items = json.load(fh)
        keep = set(range(FIRST)) | selected if model in PAIR_MODELS else set(range(FIRST_OTHER))
        rows = [{"index": i, **items[i]} for i in sorted(keep)]
        # mtime=0: the same input gives the same bytes, so a rebuild shows no spurious change.
        with gzip.GzipFile(OUT / f"{model}.json.gz", "wb", mtime=0) as fh:
            fh.write(json.dumps(rows, ensure_ascii=False).encode("utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
