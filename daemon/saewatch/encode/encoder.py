"""The SAE encoder: events -> max-pooled sparse SAE codes of their prompt and response.

Per text: hook activations of its own tokens (see :mod:`saewatch.encode.reader`) are encoded by
the SAE, max-pooled over tokens (the document vector), and the features above ``threshold``
("fired anywhere") are kept with their pooled values for ranking; with presence thresholds
(:mod:`saewatch.encode.presence`) only those whose pooled value reaches their own calibrated
threshold.

The hot path (issue 17) keeps Python out of the per-token and per-document work: one tokenizer
call per poll for both fields (:meth:`ActivationReader.tokenize_fields`), padding and text
masking as array operations (:mod:`saewatch.encode.batching`), max-pooling on the device into a
bounded ``[documents, d_sae]`` buffer and one vectorised CSR assembly per field
(:mod:`saewatch.encode.pooling`). On CUDA the host copies are pinned and asynchronous and the
only sync per field is the final ``nonzero``; :meth:`SAEEncoder.encode_stream` also tokenizes
the next poll while the current one runs. The codes are bit-identical to the per-document
implementation it replaced (``tests/encode/test_enc_hotpath.py`` keeps that as a reference).

Build the offline default in one call (loads SmolLM2-135M-Instruct and the shipped SAE)::

    encoder = SAEEncoder.from_settings(EncodeSettings())
    batch = encoder.encode(events)
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from sae_lens import SAE
from transformers import PreTrainedModel
from typing_extensions import override

from saewatch.config import EncodeSettings
from saewatch.encode.base import DeviceMemory, Encoder, EncoderHealth, EncoderInfo, PendingCodes
from saewatch.encode.default import DEFAULT_MODEL_NAME
from saewatch.encode.exceptions import SaeLoadError
from saewatch.encode.health import DEFAULT_SANITY_TOKENS, SanityCheck
from saewatch.encode.model import load_language_model, parse_hook_name
from saewatch.encode.pooling import MaxPool, is_plain_topk, topk_codes
from saewatch.encode.precision import Precision
from saewatch.encode.presence import PresenceThresholds, resolve_presence
from saewatch.encode.reader import ActivationReader, TokenBatch, resolve_device
from saewatch.encode.sae import LoadedSae, SaeExpectations, load_sae
from saewatch.encode.text import TokenizedText
from saewatch.encode.windows import PeakWindows, token_positions
from saewatch.models import FeatureBatch, LLMEvent, SparseCodes, TextField, TokenWindows

logger = logging.getLogger(__name__)

_Row = tuple[np.ndarray, np.ndarray]
# (feature ids, values) of one batch's nonzero token-level SAE activations, flat, on the device.
TokenSink = Callable[[torch.Tensor, torch.Tensor], None]
FIELDS: tuple[TextField, TextField] = ("prompt", "response")


class SAEEncoder(Encoder):
    """Encodes events' texts into sparse SAE document codes (max-pool, then threshold).

    Parameters
    ----------
    reader
        Reads the hook activations (model, tokenizer, batching, device, precision).
    sae
        A sae-lens SAE trained on ``reader.hook``.
    encoder_id
        Names model, hook and SAE; state refuses to mix codes of two encoders.
    threshold
        A feature fires in a document when its max-pooled activation exceeds this.
    presence
        Per-feature thresholds applied after pooling (a feature is present where its pooled
        value reaches its own threshold); ``None``: ``threshold`` alone decides.
    expectations
        Healthy FVE/L0 ranges for the sanity check on the first tokens.
    sanity_tokens
        How many tokens the sanity check looks at (0 turns it off).
    look_ahead
        :meth:`begin` tokenizes in a worker thread, so the caller can begin the next batch
        before finishing this one (:attr:`looks_ahead`; pays off where the forward runs on a
        GPU and the host's cores are free meanwhile).
    windows
        Record where each document's features fire (:mod:`saewatch.encode.windows`) on the
        batches of :meth:`encode`, for the highlighted examples.
    """

    def __init__(
        self,
        reader: ActivationReader,
        sae: SAE,
        encoder_id: str,
        threshold: float = 0.0,
        expectations: SaeExpectations | None = None,
        sanity_tokens: int = DEFAULT_SANITY_TOKENS,
        model_name: str = DEFAULT_MODEL_NAME,
        sae_id: str = "",
        presence: PresenceThresholds | None = None,
        look_ahead: bool = False,
        windows: bool = True,
    ) -> None:
        if int(sae.cfg.d_in) != reader.d_model:
            raise SaeLoadError(
                f"SAE d_in {sae.cfg.d_in} != model hidden size {reader.d_model}: "
                "the SAE was trained on another model"
            )
        self.reader = reader
        self.sae = sae.to(reader.device).eval()
        self.encoder_id = encoder_id
        self.d_sae = int(sae.cfg.d_sae)
        self._info = EncoderInfo(model=model_name, hook=reader.hook.hook_name, sae=sae_id,
                                 device=str(reader.device), precision=reader.precision)
        self.threshold = threshold
        if presence is not None:
            presence.check(self.d_sae)
        # Public so that tools can filter codes cached without them (benchmarks).
        self.presence = presence
        # sae-lens' own TopK SAE is pooled from its top-k alone, never densified per token.
        self._topk = is_plain_topk(self.sae)
        self._sanity = SanityCheck(
            expectations or SaeExpectations(0.0, None, "none"), tokens_wanted=sanity_tokens
        )
        self._look_ahead = look_ahead
        self.windows = windows
        self._tokenizer_thread: ThreadPoolExecutor | None = None  # made on first use

    @classmethod
    def from_settings(cls, settings: EncodeSettings) -> SAEEncoder:
        """Load model, tokenizer and SAE as configured (defaults: the offline embedded ones)."""
        if settings.cpu_threads is not None:
            torch.set_num_threads(settings.cpu_threads)
        device = resolve_device(settings.device)
        loaded = load_sae(settings.sae, device)
        parse_hook_name(loaded.hook_name)  # fail on an unsupported hook before loading a model
        model, tokenizer = load_language_model(settings.model, settings.gguf_file)
        return cls.from_parts(model, tokenizer, loaded, settings, model_name=settings.model)

    @classmethod
    def from_parts(
        cls,
        model: PreTrainedModel,
        tokenizer: object,
        loaded: LoadedSae,
        settings: EncodeSettings,
        model_name: str | None = None,
    ) -> SAEEncoder:
        """Assemble an encoder from an already loaded model and SAE (tests, benchmarks)."""
        hook = parse_hook_name(loaded.hook_name)
        reader = ActivationReader(
            model,
            tokenizer,
            hook,
            device=settings.device,
            precision=settings.precision,
            max_tokens_per_text=settings.max_tokens_per_text,
            tail_tokens_per_text=settings.tail_tokens,
            max_tokens_per_batch=settings.max_tokens_per_batch,
            use_chat_template=settings.use_chat_template,
        )
        name = model_name or DEFAULT_MODEL_NAME
        encoder_id = f"{name}/{hook.hook_name}/{loaded.sae_id}"
        if settings.threshold > 0:  # other thresholds give other codes: never mix them
            encoder_id += f"/threshold={settings.threshold:g}"
        presence = resolve_presence(settings.presence_thresholds, loaded.directory,
                                    int(loaded.sae.cfg.d_sae))
        if presence is not None:  # likewise: codes with and without them never share a state
            encoder_id += f"/presence={presence.digest}"
        return cls(
            reader,
            loaded.sae,
            encoder_id=encoder_id,
            threshold=settings.threshold,
            expectations=loaded.expectations,
            sanity_tokens=settings.sanity_tokens,
            model_name=name,
            sae_id=loaded.sae_id,
            presence=presence,
            look_ahead=settings.look_ahead == "on"
            or (settings.look_ahead == "auto" and reader.device.type == "cuda"),
            windows=settings.highlight_windows,
        )

    @property
    @override
    def health(self) -> EncoderHealth:
        """FVE and mean L0 on the first tokens, with warnings when out of range."""
        return self._sanity.health()

    @override
    def describe(self) -> EncoderInfo:
        return self._info

    @override
    def device_memory(self) -> DeviceMemory | None:
        device = self.reader.device
        if device.type != "cuda":
            return None
        return DeviceMemory(str(device), torch.cuda.memory_allocated(device),
                            torch.cuda.memory_reserved(device))

    @override
    def encode(self, events: Sequence[LLMEvent]) -> FeatureBatch:
        """Encode both text fields of every event; never drops an event.

        Empty texts get empty codes (and ``n_tokens`` 0).
        """
        return self._encode_tokenized(events, self._tokenize_events(events))

    @property
    @override
    def looks_ahead(self) -> bool:
        return self._look_ahead

    @override
    def begin(self, events: Sequence[LLMEvent]) -> PendingCodes:
        """Start tokenizing ``events`` in the worker thread where :attr:`looks_ahead` (fast
        tokenizers release the GIL, so on a GPU host it runs beside the forward of the batch
        before); :meth:`PendingCodes.result` runs model and SAE in the caller's thread."""
        if not self._look_ahead:
            return super().begin(events)
        return self._begin_in_thread(events)

    def _begin_in_thread(self, events: Sequence[LLMEvent]) -> PendingCodes:
        if self._tokenizer_thread is None:
            self._tokenizer_thread = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="saewatch-tokenize")
        tokens = self._tokenizer_thread.submit(self._tokenize_events, events)
        return PendingCodes(events, lambda: self._encode_tokenized(events, tokens.result()))

    def with_look_ahead(self, on: bool = True) -> SAEEncoder:
        """This encoder (same model, SAE, id and codes) with :attr:`looks_ahead` set to ``on``
        and a worker thread of its own (side-by-side benchmarks share one loaded model)."""
        twin = copy.copy(self)
        twin._look_ahead = on
        twin._tokenizer_thread = None
        return twin

    @override
    def close(self) -> None:
        if self._tokenizer_thread is not None:
            self._tokenizer_thread.shutdown(wait=True)
            self._tokenizer_thread = None

    def encode_stream(self, batches: Iterable[Sequence[LLMEvent]]) -> Iterator[FeatureBatch]:
        """:meth:`encode` of each batch in turn, tokenizing the next batch while this one runs
        (whatever :attr:`looks_ahead` says): the next batch is taken from ``batches`` and
        begun in the worker thread before the current one is finished; codes are those of
        :meth:`encode`."""
        pending: PendingCodes | None = None
        for events in batches:
            following = self._begin_in_thread(events)
            if pending is not None:
                yield pending.result()
            pending = following
        if pending is not None:
            yield pending.result()

    def _tokenize_events(self, events: Sequence[LLMEvent]) -> list[list[TokenizedText]]:
        return self.reader.tokenize_fields(
            [([e.text(f) for e in events], f) for f in FIELDS]
        )

    def _encode_tokenized(
        self, events: Sequence[LLMEvent], tokenized: list[list[TokenizedText]]
    ) -> FeatureBatch:
        if not self.windows:
            codes = {f: self.encode_docs(docs) for f, docs in zip(FIELDS, tokenized, strict=True)}
            return FeatureBatch(encoder_id=self.encoder_id, d_sae=self.d_sae,
                                events=tuple(events), prompt=codes["prompt"],
                                response=codes["response"])
        (prompt, prompt_w), (response, response_w) = (
            self.encode_docs_with_windows(docs) for docs in tokenized)
        return FeatureBatch(
            encoder_id=self.encoder_id,
            d_sae=self.d_sae,
            events=tuple(events),
            prompt=prompt,
            response=response,
            prompt_windows=prompt_w,
            response_windows=response_w,
        )

    def encode_texts(self, texts: Sequence[str], field: TextField) -> SparseCodes:
        """Sparse codes of ``texts`` read as ``field`` turns, in input order."""
        return self.encode_docs(self.reader.tokenize(texts, field))

    def encode_docs(
        self, docs: Sequence[TokenizedText], on_tokens: TokenSink | None = None
    ) -> SparseCodes:
        """Sparse codes of tokenized texts, in input order (pooled on the device).

        ``on_tokens`` also receives each batch's token-level activations (calibration).
        """
        return self._encode_docs(docs, on_tokens, None)

    def encode_docs_with_windows(
        self, docs: Sequence[TokenizedText]
    ) -> tuple[SparseCodes, TokenWindows]:
        """:meth:`encode_docs`, and where each document's features fire (its peak windows)."""
        presence = None if self.presence is None else self.presence.values
        windows = PeakWindows(len(docs), self.d_sae, self.threshold, presence)
        codes = self._encode_docs(docs, None, windows)
        with self.reader.clock.stage("assemble"):
            return codes, windows.finish([d.spans for d in docs])

    def _encode_docs(self, docs: Sequence[TokenizedText], on_tokens: TokenSink | None,
                     windows: PeakWindows | None) -> SparseCodes:
        pool = MaxPool(len(docs), self.d_sae, self.reader.device, self.threshold)
        for _ in self.reader.map_batches(
                docs, lambda batch: self._add(pool, batch, on_tokens, windows)):
            pass
        with self.reader.clock.stage("assemble"):
            n_tokens = np.fromiter((d.n_tokens for d in docs), np.int32, len(docs))
            truncated = np.fromiter((d.truncated for d in docs), bool, len(docs))
            return self._present(pool.finish(n_tokens, truncated))

    def _present(self, codes: SparseCodes) -> SparseCodes:
        """The per-feature presence filter, on every path that makes document codes."""
        return codes if self.presence is None else self.presence.apply(codes)

    def _add(self, pool: MaxPool, batch: TokenBatch, on_tokens: TokenSink | None = None,
             windows: PeakWindows | None = None) -> None:
        """SAE-encode one batch's tokens and max-pool them into their documents' rows."""
        clock = self.reader.clock
        with torch.inference_mode():
            if self._topk and not self._sanity.wants_more:
                with clock.stage("sae"):
                    values, indices = topk_codes(self.sae, batch.acts)
                with clock.stage("pool"):
                    pool.add_topk(batch.docs, batch.doc_index, values, indices)
                # After pooling: a CUDA OOM there retries the batch, which must not feed twice.
                fired = values > 0
                if on_tokens is not None:
                    on_tokens(indices[fired], values[fired])
                if windows is not None:
                    tok, slot = fired.nonzero(as_tuple=True)
                    self._add_windows(windows, batch, tok, indices[tok, slot], values[tok, slot])
                return
            with clock.stage("sae"):
                feats = self.sae.encode(batch.acts)
                if self._sanity.wants_more:
                    self._sanity.update(batch.acts, self.sae.decode(feats), feats)
            with clock.stage("pool"):
                pool.add_dense(batch.docs, batch.doc_index, feats)
            rows, cols = (feats > 0).nonzero(as_tuple=True)
            if on_tokens is not None:
                on_tokens(cols, feats[rows, cols])
            if windows is not None:
                self._add_windows(windows, batch, rows, cols, feats[rows, cols])

    def _add_windows(self, windows: PeakWindows, batch: TokenBatch, tok: torch.Tensor,
                     features: torch.Tensor, values: torch.Tensor) -> None:
        """Feed one batch's nonzero token activations to the peak windows (after pooling)."""
        with self.reader.clock.stage("pool"):  # part of pooling, as a stage
            try:
                rows = batch.doc_index[tok]
                n_tokens = torch.bincount(batch.doc_index, minlength=len(batch.docs))
                pos = token_positions(batch.doc_index, n_tokens)[tok]
                windows.add(batch.docs, rows, pos, features, values, n_tokens)
            except torch.cuda.OutOfMemoryError:
                # Not retried: the batch is pooled already. Its documents get no highlights.
                logger.warning("CUDA out of memory on the peak windows of %d texts; they are "
                               "shown without highlights", len(batch.docs))

    def _pool(self, batch: TokenBatch, presence: bool = True) -> tuple[list[int], list[_Row]]:
        """One batch's codes as (its documents, one (ids, values) row each): for tools that
        read batches themselves (``benchmarks/detection/cache.py``); same codes as encode,
        or without the presence thresholds (``presence=False``: a cache that serves any)."""
        pool = MaxPool(len(batch.docs), self.d_sae, self.reader.device, self.threshold)
        self._add(pool, TokenBatch(list(range(len(batch.docs))), batch.acts, batch.doc_index,
                                   batch.token_ids))
        pooled = pool.finish(np.zeros(len(batch.docs), np.int32), np.zeros(len(batch.docs), bool))
        codes = self._present(pooled) if presence else pooled
        return batch.docs, [codes.row(d) for d in range(len(batch.docs))]

    def dense_embed(self, texts: Sequence[str], field: TextField = "response") -> np.ndarray:
        """Mean-pooled hook activations per text (the dense-embedding drift baseline)."""
        return self.reader.dense_embed(texts, field)


__all__ = ["EncoderHealth", "Precision", "SAEEncoder"]
