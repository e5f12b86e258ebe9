"""Define or remove a watched behaviour over HTTP: ``POST /api/v1/behaviours``,
``DELETE /api/v1/behaviours/{behaviour}`` (behind the bearer token like every route).

The HTTP threads never touch the model or the live state: a request becomes a
:class:`BehaviourChange` handed to the daemon's loop (:class:`BehaviourChanges`), which applies
it between two batches with its own encoder and state (``saewatch.behaviours.apply_change``) and
answers; the request waits for that answer (at most :data:`APPLY_TIMEOUT_S`). The definition is
in the next snapshot, like the counts.
"""

from __future__ import annotations

import json
import logging
import queue
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Literal

from saewatch.errors import SaewatchError
from saewatch.export.exceptions import BadRequest, HttpError, NotFound, Unavailable
from saewatch.models import TextField

logger = logging.getLogger(__name__)

APPLY_TIMEOUT_S = 300.0  # encoding examples and, once, the demo background takes minutes on CPU
MAX_BODY_BYTES = 1 << 20  # a handful of example texts
PATH = "/api/v1/behaviours"


class Conflict(HttpError):
    """The change contradicts the state (a duplicate name, nothing specific in the examples)."""

    title = "Conflict"
    status = 409


@dataclass(frozen=True)
class BehaviourChange:
    """One asked change: ``add`` (name, examples, counter-examples, field) or ``remove``."""

    action: Literal["add", "remove"]
    name: str
    examples: tuple[str, ...] = ()
    counter_examples: tuple[str, ...] = ()
    field: TextField = "response"


class BehaviourChanges:
    """Changes asked over HTTP, applied by the loop thread between batches.

    >>> changes = BehaviourChanges()
    >>> import threading
    >>> done = []
    >>> t = threading.Thread(target=lambda: done.append(
    ...     changes.submit(BehaviourChange("remove", "apology"), timeout=10)))
    >>> t.start()
    >>> while not changes.pending():
    ...     pass
    >>> changes.apply_all(lambda c: f"{c.action}d {c.name}")
    1
    >>> t.join(); done
    ['removed apology']
    """

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[BehaviourChange, Future[str]]] = queue.Queue()

    def submit(self, change: BehaviourChange, timeout: float = APPLY_TIMEOUT_S) -> str:
        """Queue ``change`` and wait for the loop's answer (its message, or its error)."""
        answer: Future[str] = Future()
        self._queue.put((change, answer))
        try:
            return answer.result(timeout=timeout)
        except FutureTimeout as exc:
            raise Unavailable(f"the daemon did not apply the change within {timeout:.0f} s "
                              "(it may still do so): see GET /api/v1/behaviours") from exc

    def pending(self) -> bool:
        return not self._queue.empty()

    def apply_all(self, apply: Callable[[BehaviourChange], str]) -> int:
        """Apply every queued change (on the loop thread); returns how many were applied. A
        :class:`SaewatchError` goes back to the request; anything else stops the daemon."""
        applied = 0
        while True:
            try:
                change, answer = self._queue.get_nowait()
            except queue.Empty:
                return applied
            try:
                answer.set_result(apply(change))
            except SaewatchError as exc:
                answer.set_exception(exc)
            applied += 1


def parse_add(body: bytes) -> BehaviourChange:
    """The change a POST body asks for: ``{"name", "examples", "counter_examples"?, "field"?}``.

    >>> parse_add(b'{"name": "apology", "examples": ["Sorry!"]}').examples
    ('Sorry!',)
    >>> parse_add(b'{"name": "apology"}')
    Traceback (most recent call last):
    ...
    saewatch.export.exceptions.BadRequest: body: "examples" must be a non-empty list of texts
    """
    try:
        data: Any = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not JSON ({exc}): send {{\"name\": ..., \"examples\": [...]}}"
                         ) from exc
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise BadRequest('body: expected {"name": "...", "examples": ["...", ...]}')
    texts = {}
    for key, required in (("examples", True), ("counter_examples", False)):
        value = data.get(key, [] if not required else None)
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value) or (
                required and not [t for t in value if t.strip()]):
            raise BadRequest(f'body: "{key}" must be a {"non-empty " if required else ""}list '
                             "of texts")
        texts[key] = tuple(t for t in value if t.strip())
    field = data.get("field", "response")
    if field not in ("prompt", "response"):
        raise BadRequest('body: "field" is "response" or "prompt"')
    return BehaviourChange("add", data["name"], texts["examples"], texts["counter_examples"],
                           field)


def handle_write(changes: BehaviourChanges | None, method: str, path: str,
                 body: bytes) -> tuple[int, dict[str, str]]:
    """Status and JSON answer of a POST or DELETE (raises :class:`HttpError` to refuse)."""
    if method == "POST" and path == PATH:
        change = parse_add(body)
    elif method == "DELETE" and path.startswith(PATH + "/") and path.count("/") == 4:
        change = BehaviourChange("remove", path.rsplit("/", 1)[1])
    else:
        raise NotFound(f"no {method} route {path!r}; see /api/openapi.json")
    if changes is None:
        raise Unavailable("behaviour changes need the daemon's loop (saewatch run): this "
                          "server has none; use saewatch behaviour add")
    try:
        message = changes.submit(change)
    except HttpError:
        raise
    except SaewatchError as exc:
        raise Conflict(str(exc)) from exc
    return (201 if change.action == "add" else 200), {"status": "ok", "message": message}


def document(paths: dict[str, Any]) -> None:
    """Add the two write operations to an OpenAPI ``paths`` object."""
    problem: dict[str, Any] = {"description": "Refused: the problem's detail says what to do",
               "content": {"application/problem+json": {}}}
    answer: dict[str, Any] = {"content": {"application/json": {}}}
    paths.setdefault(PATH, {})["post"] = {
        "operationId": "behaviour_add", "tags": ["api"],
        "summary": "Define a watched behaviour by example texts (fitted by the daemon; "
                   "scored at once over the retrieval ring)",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["name", "examples"], "properties": {
                "name": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
                "examples": {"type": "array", "items": {"type": "string"}},
                "counter_examples": {"type": "array", "items": {"type": "string"}},
                "field": {"type": "string", "enum": ["response", "prompt"]}}}}}},
        "responses": {"201": {"description": "Defined", **answer}, "400": problem,
                      "409": problem, "503": problem}}
    paths.setdefault(PATH + "/{behaviour}", {})["delete"] = {
        "operationId": "behaviour_remove", "tags": ["api"],
        "summary": "Remove a watched behaviour and its counts",
        "parameters": [{"name": "behaviour", "in": "path", "required": True,
                        "schema": {"type": "string"}}],
        "responses": {"200": {"description": "Removed", **answer}, "409": problem,
                      "503": problem}}
