"""``labels``: where feature labels come from beyond the SAE's shipped file, and the optional
OpenAI-compatible LLM that writes labels from top contexts and summaries of comparisons."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from saewatch.config.base import Section


class LLMSettings(Section):
    """An OpenAI-compatible chat-completions endpoint (off unless ``labels.llm`` is given).

    The key is read from the environment variable ``api_key_env`` or from ``api_key_file``
    (never from the YAML itself); a local server needs none.

    >>> LLMSettings(base_url="http://127.0.0.1:8000/v1", model="m").api_key_env
    'SAEWATCH_LLM_API_KEY'
    """

    base_url: str = Field(min_length=1)  # the API root, e.g. https://api.openai.com/v1
    model: str = Field(min_length=1)
    api_key_env: str | None = "SAEWATCH_LLM_API_KEY"
    api_key_file: Path | None = None
    timeout_s: float = Field(default=60.0, gt=0)
    max_tokens: int = Field(default=160, ge=8)
    # A label is kept when, judged by the same model on held-out contexts (half where the
    # feature fires, half where it does not), it is right at least this often.
    min_label_score: float = Field(default=0.7, ge=0.5, le=1.0)
    # Summaries of a comparison's top findings, written when its findings change.
    summaries: bool = True
    summary_comparisons: int = Field(default=8, ge=1)  # most drifted comparisons summarised


class LabelsSettings(Section):
    """Feature labels and the optional LLM behind them."""

    llm: LLMSettings | None = None
