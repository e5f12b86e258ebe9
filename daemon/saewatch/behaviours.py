"""Define a watched behaviour from example texts: read them, encode, fit, store in the state.

The wiring of ``saewatch behaviour add`` and of the ``behaviours:`` configuration (fitted when
the daemon starts): texts are encoded with the state's own encoder, the background is the
state's latest events (:class:`~saewatch.state.background.BackgroundCodes`) or, while it holds
fewer than :data:`~saewatch.state.behaviour_fit.MIN_BACKGROUND`, :data:`DEMO_BACKGROUND`
responses of the shipped demo sample (encoded once per encoder and cached), and the definition
is added to the state, which scores it at once over its retrieval ring. Every check runs before
the state changes: a bad file, a duplicate name or examples without a specific feature leave
nothing half-stored.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from pydantic import TypeAdapter, ValidationError

from saewatch.config import BehaviourSpec
from saewatch.encode.base import Encoder
from saewatch.errors import BehaviourInputError, ConfigError, SaewatchError
from saewatch.export.web.behaviour_writes import BehaviourChange
from saewatch.models import FeatureBatch, LLMEvent, SparseCodes, TextField
from saewatch.models.behaviours import BehaviourDefinition, BehaviourName
from saewatch.state.behaviour_fit import MIN_BACKGROUND, fit_behaviour
from saewatch.state.behaviours import BehaviourError
from saewatch.state.descriptors import extract_descriptors
from saewatch.state.monitor import MonitorState

logger = logging.getLogger(__name__)

DEMO_MODEL = "claude-2.1"  # a model of the shipped sample: ordinary assistant answers
DEMO_BACKGROUND = 400  # its responses encoded as background (~1-3 min once on 2 CPU cores)
MAX_EXAMPLES = 200  # more is not a handful of examples: use a classifier
SEPARATOR = "---"  # a line of its own between multi-line examples in a text file
T0 = datetime(2026, 1, 1, tzinfo=UTC)
_NAME: TypeAdapter[str] = TypeAdapter(BehaviourName)


def read_examples(path: Path, what: str = "examples") -> list[str]:
    """Texts of an examples file: JSON lines (a string or ``{"text": ...}`` each) for ``.jsonl``;
    otherwise plain text, examples separated by ``---`` lines, or one per line without them.

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "ex.txt"
    >>> _ = p.write_text("I'm sorry.\\n\\nI apologise.\\n")
    >>> read_examples(p)
    ["I'm sorry.", 'I apologise.']
    >>> _ = p.write_text("")
    >>> read_examples(p)
    Traceback (most recent call last):
    ...
    saewatch.errors.BehaviourInputError: ...ex.txt holds no examples: put one text per line (or JSON lines, or texts between --- lines)
    """
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BehaviourInputError(f"cannot read the {what} file {path} ({exc}): give a readable "
                                  "UTF-8 text file") from exc
    if path.suffix == ".jsonl":
        texts = [_json_text(line, path, n) for n, line in enumerate(raw.splitlines(), 1)
                 if line.strip()]
    elif any(line.strip() == SEPARATOR for line in raw.splitlines()):
        blocks: list[str] = []
        current: list[str] = []
        for line in [*raw.splitlines(), SEPARATOR]:
            if line.strip() == SEPARATOR:
                blocks.append("\n".join(current).strip())
                current = []
            else:
                current.append(line)
        texts = blocks
    else:
        texts = [line.strip() for line in raw.splitlines()]
    texts = [t for t in texts if t]
    if not texts:
        raise BehaviourInputError(f"{path} holds no {what}: put one text per line (or JSON "
                                  f"lines, or texts between {SEPARATOR} lines)")
    if len(texts) > MAX_EXAMPLES:
        raise BehaviourInputError(f"{path} holds {len(texts)} {what}, at most {MAX_EXAMPLES}: "
                                  "give a handful (5-20) that show the behaviour")
    return texts


def _json_text(line: str, path: Path, n: int) -> str:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BehaviourInputError(f"{path}:{n} is not JSON ({exc.msg}): one JSON string or "
                                  '{"text": ...} per line') from exc
    text = item.get("text") if isinstance(item, dict) else item
    if not isinstance(text, str):
        raise BehaviourInputError(f'{path}:{n}: expected a JSON string or {{"text": ...}}')
    return text


def encode_texts(encoder: Encoder, texts: Sequence[str], field: TextField) -> SparseCodes:
    """Codes of ``texts`` read as ``field`` turns, through the encoder's own contract."""
    if not texts:
        return SparseCodes.from_rows([], [])
    events = [LLMEvent(event_id=f"behaviour-{i}", timestamp=T0 + timedelta(seconds=i),
                       model_id="behaviour", model_version="examples",
                       prompt=t if field == "prompt" else "",
                       response=t if field == "response" else "")
              for i, t in enumerate(texts)]
    return encoder.encode(events).codes(field)


def background(state: MonitorState, encoder: Encoder, field: TextField,
               cache: Path | None) -> tuple[SparseCodes, np.ndarray, str]:
    """What the examples are told apart from (codes and descriptor values), and where it came
    from."""
    own = state.background_codes(field)
    if len(own) >= MIN_BACKGROUND:
        return own, state.background_descriptors(field), f"state: the latest {len(own)} events"
    codes = demo_background(encoder, field, cache)
    return codes, extract_descriptors(demo_texts(field), codes.n_tokens), (
        f"demo sample: {DEMO_BACKGROUND} {DEMO_MODEL} {field}s")


def demo_texts(field: TextField) -> list[str]:
    """The demo sample's first :data:`DEMO_BACKGROUND` texts of ``field``."""
    from saewatch.datasets import read_alpaca

    rows = read_alpaca(DEMO_MODEL)[:DEMO_BACKGROUND]
    return [r.output if field == "response" else r.instruction for r in rows]


def demo_background(encoder: Encoder, field: TextField, cache: Path | None) -> SparseCodes:
    """The demo sample's first :data:`DEMO_BACKGROUND` texts of ``field``, encoded (cached
    under ``cache`` by encoder id)."""
    tag = hashlib.sha256(f"{encoder.encoder_id}|{field}".encode()).hexdigest()[:16]
    path = cache / f"background-{tag}.npz" if cache is not None else None
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as data:
            return SparseCodes(indptr=data["indptr"], indices=data["indices"],
                               values=data["values"], n_tokens=data["n_tokens"],
                               truncated=data["truncated"])
    texts = demo_texts(field)
    logger.info("encoding %d demo %ss as the behaviour background (once)", len(texts), field)
    codes = encode_texts(encoder, texts, field)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, indptr=codes.indptr, indices=codes.indices, values=codes.values,
                 n_tokens=codes.n_tokens, truncated=codes.truncated)
        tmp.replace(path)
    return codes


def define(
    state: MonitorState, encoder: Encoder, name: str, examples: Sequence[str],
    counter_examples: Sequence[str] = (), field: TextField = "response",
    cache: Path | None = None,
) -> BehaviourDefinition:
    """Fit ``name`` from its texts and add it to ``state`` (scored at once over its ring)."""
    try:
        _NAME.validate_python(name)
    except ValidationError as exc:
        raise BehaviourInputError(f"behaviour name {name!r}: use lower-case letters, digits and "
                                  "_ (a letter first, at most 64)") from exc
    if any(d.name == name for d in state.behaviours()):
        raise BehaviourError(f"behaviour {name!r} exists already: remove it first (saewatch "
                             "behaviour remove) or choose another name")
    if not examples:
        raise BehaviourInputError(f"behaviour {name!r}: no examples; give 5-20 example texts")
    if state.encoder_id is not None and state.encoder_id != encoder.encoder_id:
        raise BehaviourError(f"the state holds codes of {state.encoder_id!r} but the encoder is "
                             f"{encoder.encoder_id!r}: use the daemon's encode settings")
    bg, bg_descriptors, source = background(state, encoder, field, cache)
    example_codes = encode_texts(encoder, examples, field)
    counter_codes = encode_texts(encoder, counter_examples, field)
    definition = fit_behaviour(
        name, examples, example_codes, bg, encoder.d_sae, encoder.encoder_id, field,
        counter_examples, counter_codes, source,
        example_descriptors=extract_descriptors(examples, example_codes.n_tokens),
        background_descriptors=bg_descriptors,
        counter_descriptors=extract_descriptors(counter_examples, counter_codes.n_tokens))
    if state.d_sae is None:  # an empty state: bind it to the encoder the examples used
        empty = SparseCodes.from_rows([], [])
        state.update(FeatureBatch(encoder_id=encoder.encoder_id, d_sae=encoder.d_sae, events=(),
                                  prompt=empty, response=empty))
    state.define_behaviour(definition)
    return definition


def spec_texts(spec: BehaviourSpec) -> tuple[list[str], list[str]]:
    """Examples and counter-examples of a configured behaviour (files read)."""
    examples = (read_examples(spec.examples_file) if spec.examples_file is not None
                else list(spec.examples))
    counters = (read_examples(spec.counter_file, "counter-examples")
                if spec.counter_file is not None else list(spec.counter_examples))
    return examples, counters


def apply_configured(state: MonitorState, encoder: Encoder, specs: Sequence[BehaviourSpec],
                     cache: Path | None = None) -> list[BehaviourDefinition]:
    """Fit and add the configured behaviours the state lacks; returns those added. A name
    the state holds keeps its stored definition (restarts and replicas agree)."""
    have = {d.name: d for d in state.behaviours()}
    added = []
    for spec in specs:
        try:
            examples, counters = spec_texts(spec)
        except BehaviourInputError as exc:
            raise ConfigError(f"behaviours[{spec.name!r}]: {exc}") from exc
        stored = have.get(spec.name)
        if stored is not None:
            if tuple(examples) != stored.examples:
                logger.warning("behaviour %s: the configured examples differ from the stored "
                               "ones; the stored definition is kept (saewatch behaviour remove "
                               "%s, then restart, to refit)", spec.name, spec.name)
            continue
        try:
            added.append(define(state, encoder, spec.name, examples, counters, spec.field,
                                cache or _default_cache()))
        except SaewatchError as exc:  # the configuration is what to fix: exit 2, one line
            raise ConfigError(f"behaviours[{spec.name!r}]: {exc}") from exc
    return added


def apply_change(state: MonitorState, encoder: Encoder | None, change: BehaviourChange,
                 cache: Path | None = None) -> str:
    """Apply a change asked over HTTP (on the loop thread); returns what was done."""
    if change.action == "remove":
        state.remove_behaviour(change.name)
        return f"behaviour {change.name} removed"
    if encoder is None:
        raise BehaviourError("this daemon has no encoder (the aggregate role): run saewatch "
                             "behaviour add against its state.snapshot_dir")
    d = define(state, encoder, change.name, change.examples, change.counter_examples,
               change.field, cache or _default_cache())
    return (f"behaviour {d.name}: {len(d.features)} features, flags {d.example_recall:.0%} of "
            f"its examples and {d.background_rate:.2%} of the background ({d.background_source})")


def _default_cache() -> Path:
    from saewatch.encode.default import cache_dir

    return cache_dir() / "behaviours"
