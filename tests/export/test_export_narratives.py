"""Narratives of comparisons by the optional LLM (``labels.llm``), against a real local
OpenAI-compatible server (``transformers serve`` of the embedded SmolLM2; the ``llm_server``
fixture): written by the summariser thread, served in the API and on the report page, refused
cleanly when the endpoint is wrong."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from export.drift_reports import drift_report, drift_result
from export.export_harness import ExporterFactory
from export.http_helpers import fetch
from saewatch.config import LLMSettings
from saewatch.errors import LLMError
from saewatch.export.narratives import Summariser
from saewatch.export.web.schemas import comparison_id
from saewatch.llm.client import ChatClient, Message
from saewatch.llm.summary import MAX_CHARS, findings_digest, findings_text, summarise

pytestmark = pytest.mark.slow


def test_the_findings_the_llm_reads_are_the_reports_own() -> None:
    result = drift_result()
    text = findings_text(result)
    assert text.splitlines()[0].startswith(f"Model {result.key.model_id}, response texts")
    labelled_up = [d.label for d in result.top_up if d.label][:5]
    assert labelled_up and all(f'"{label}"' in text for label in labelled_up)
    assert findings_digest(result) == findings_digest(drift_result())  # same findings
    fewer = result.model_copy(update={"top_up": result.top_up[1:]})
    assert findings_digest(fewer) != findings_digest(result)


def test_a_real_server_answers_and_a_narrative_is_written(llm_server: LLMSettings) -> None:
    client = ChatClient(llm_server)
    answer = client.complete([Message("user", "Say hello in one word.")], max_tokens=8)
    assert isinstance(answer, str) and answer.strip()
    result = drift_result()
    narrative = summarise(client, result)
    assert narrative.text and len(narrative.text) <= MAX_CHARS
    assert len(re.findall(r"[.!?](?:\s|$)", narrative.text)) <= 3
    assert "\n" not in narrative.text
    assert narrative.model == llm_server.model
    assert narrative.findings_digest == findings_digest(result)


def test_the_summariser_serves_narratives_in_the_api_and_on_the_page(
    llm_server: LLMSettings, exporter: ExporterFactory
) -> None:
    report = drift_report()
    served = exporter(report=report)
    summariser = Summariser(served.holder, ChatClient(llm_server), llm_server,
                            CollectorRegistry())
    drifted = [r for r in report.comparisons if r.verdict == "drift"]
    assert [r.key for r in summariser.due()] == [r.key for r in drifted]
    assert summariser.write_due() == len(drifted) == 1
    assert summariser.due() == [] and summariser.write_due() == 0  # findings unchanged
    assert summariser.requests.labels(purpose="summary", outcome="ok")._value.get() == 1
    narrative = served.holder.narrative(drifted[0].key)
    assert narrative is not None

    body = fetch(f"{served.url}/api/v1/comparisons/{comparison_id(drifted[0].key)}").json()
    assert body["narrative"]["text"] == narrative.text
    assert body["narrative"]["findings_digest"] == findings_digest(drifted[0])
    others = [r for r in report.comparisons if r.verdict != "drift"]
    other = fetch(f"{served.url}/api/v1/comparisons/{comparison_id(others[0].key)}").json()
    assert other["narrative"] is None
    page = fetch(f"{served.url}/").text
    assert page.count('class="narrative"') == 1
    from html import escape
    assert escape(narrative.text) in page

    # A comparison that leaves the reports takes its narrative with it.
    served.holder.publish(report.model_copy(update={"comparisons": tuple(others)}))
    assert served.holder.narrative(drifted[0].key) is None


def test_a_wrong_endpoint_is_a_one_line_error_and_the_summariser_goes_on(
    exporter: ExporterFactory, tmp_path: Path
) -> None:
    served = exporter(report=drift_report())
    # A real HTTP server that is not an OpenAI-compatible API: saewatch's own exporter, which
    # answers a POST to a path it does not know with 404.
    wrong = LLMSettings(base_url=f"{served.url}/v1", model="m", api_key_env=None, timeout_s=5)
    with pytest.raises(LLMError, match=r"answered HTTP 404: check labels.llm.model") as err:
        ChatClient(wrong).complete([Message("user", "hi")])
    assert "\n" not in str(err.value)
    summariser = Summariser(served.holder, ChatClient(wrong), wrong, CollectorRegistry())
    assert summariser.write_due() == 0
    assert summariser.requests.labels(purpose="summary", outcome="error")._value.get() == 1
    assert summariser.due() == []  # not retried before RETRY_AFTER_S with the same findings
    missing = LLMSettings(base_url="http://127.0.0.1:9/v1", model="m",
                          api_key_file=tmp_path / "nokey")
    with pytest.raises(LLMError, match="api_key_file .*nokey: No such file"):
        ChatClient(missing)
