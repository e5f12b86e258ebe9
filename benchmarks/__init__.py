"""saewatch's benchmarks (``make bench``, ``make bench-detect``): speed, memory and detection.

They read the full AlpacaEval corpus (39 models), which never ships with saewatch: from
``$SAEWATCH_DATA_DIR`` when set, else from ``../shared/data`` beside the project when that folder
exists (the workshop's layout); the shipped demo sample is searched after either. Without the
corpus, a benchmark that needs another model stops with one line naming ``SAEWATCH_DATA_DIR``.
The ``--quick`` smoke modes that the suite runs need the repository's data only.
"""

import os
from pathlib import Path

_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if "SAEWATCH_DATA_DIR" not in os.environ and _SHARED.is_dir():
    # Set before any benchmark reads data; the suite sets its own folder first, and a
    # subprocess inherits whichever was chosen.
    os.environ["SAEWATCH_DATA_DIR"] = str(_SHARED)
