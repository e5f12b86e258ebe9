"""A small client of an OpenAI-compatible chat-completions endpoint (``POST
{base_url}/chat/completions``), for the optional LLM labels and diff summaries.

The standard library's HTTP client does the job: one JSON request per call, a timeout, the
bearer key from the environment or a file, and one retry on a connection error or a 5xx. Any
other failure is an :class:`LLMError` whose message names the endpoint and what to check; the
callers (the summariser thread, ``saewatch label-features --llm``) count and log it and go on
without the LLM's text, never losing monitoring over it.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from saewatch.config import LLMSettings
from saewatch.errors import LLMError

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 1.0


@dataclass(frozen=True)
class Message:
    """One chat message (``role`` is ``system``, ``user`` or ``assistant``)."""

    role: str
    content: str


class ChatClient:
    """Chat completions from one model of an OpenAI-compatible server.

    Parameters
    ----------
    settings
        ``labels.llm``: base URL (up to ``/v1``), model name, where the API key is, timeout and
        the token limit of an answer.

    >>> from saewatch.config import LLMSettings
    >>> client = ChatClient(LLMSettings(base_url="http://127.0.0.1:1/v1", model="m"))
    >>> client.url
    'http://127.0.0.1:1/v1/chat/completions'
    >>> client.complete([Message("user", "hi")])  # nothing listens on port 1
    Traceback (most recent call last):
    ...
    saewatch.errors.LLMError: LLM endpoint http://127.0.0.1:1/v1/chat/completions unreachable ...
    """

    def __init__(self, settings: LLMSettings) -> None:
        self.settings = settings
        self.url = settings.base_url.rstrip("/") + "/chat/completions"
        self._key = _api_key(settings)

    def complete(self, messages: list[Message], max_tokens: int | None = None) -> str:
        """The model's answer to ``messages`` (greedy: temperature 0), stripped."""
        body = {
            "model": self.settings.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": max_tokens or self.settings.max_tokens,
            "temperature": 0,
            "stream": False,
        }
        payload = json.dumps(body).encode()
        for attempt in (1, 2):
            try:
                return _content(self._post(payload), self.url)
            except _Retryable as exc:
                if attempt == 2:
                    raise LLMError(f"LLM endpoint {self.url} unreachable or failing ({exc}): "
                                   "check labels.llm.base_url and that the server runs") from exc
                time.sleep(RETRY_AFTER_S)
        raise AssertionError("unreachable")  # pragma: no cover

    def _post(self, payload: bytes) -> dict[str, object]:
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        request = urllib.request.Request(self.url, data=payload, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout_s) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code >= 500:
                raise _Retryable(f"HTTP {exc.code}") from exc
            raise LLMError(f"LLM endpoint {self.url} answered HTTP {exc.code}: check "
                           "labels.llm.model and the API key") from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise _Retryable(str(getattr(exc, "reason", exc))) from exc
        except json.JSONDecodeError as exc:
            raise LLMError(f"LLM endpoint {self.url} did not answer JSON: is base_url the "
                           "OpenAI-compatible API root (ending in /v1)?") from exc
        if not isinstance(answer, dict):
            raise LLMError(f"LLM endpoint {self.url} answered {type(answer).__name__}, not an "
                           "object: is it OpenAI-compatible?")
        return answer


class _Retryable(Exception):
    """A connection error or a 5xx: tried once more."""


def _content(answer: dict[str, object], url: str) -> str:
    choices = answer.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        message = choices[0].get("message")
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            return str(message["content"]).strip()
    raise LLMError(f"LLM endpoint {url} answered without choices[0].message.content: is it "
                   "an OpenAI-compatible chat-completions API?")


def _api_key(settings: LLMSettings) -> str | None:
    if settings.api_key_file is not None:
        try:
            return Path(settings.api_key_file).read_text().strip()
        except OSError as exc:
            raise LLMError(f"labels.llm.api_key_file {settings.api_key_file}: {exc.strerror}; "
                           "point it at a readable file holding the key") from exc
    if settings.api_key_env:
        return os.environ.get(settings.api_key_env) or None
    return None
