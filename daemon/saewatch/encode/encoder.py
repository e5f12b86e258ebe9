"""The SAE encoder: events -> max-pooled sparse SAE codes of their prompt and response.

Per text: hook activations of its own tokens (see :mod:`saewatch.encode.reader`) are encoded by
the SAE, max-pooled over tokens (the document vector), and the features above ``threshold``
("fired anywhere") are kept with their pooled values for ranking. Dense ``[batch, d_sae]``
arrays exist only inside one model batch.

Build the offline default in one call (loads SmolLM2-135M-Instruct and the shipped SAE)::

    encoder = SAEEncoder.from_settings(EncodeSettings())
    batch = encoder.encode(events)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from sae_lens import SAE
from transformers import PreTrainedModel
from typing_extensions import override

from saewatch.config import EncodeSettings
from saewatch.encode.base import DeviceMemory, Encoder, EncoderInfo
from saewatch.encode.default import DEFAULT_MODEL_NAME
from saewatch.encode.exceptions import SaeLoadError
from saewatch.encode.health import DEFAULT_SANITY_TOKENS, EncoderHealth, SanityCheck
from saewatch.encode.model import load_language_model, parse_hook_name
from saewatch.encode.precision import Precision
from saewatch.encode.reader import ActivationReader, TokenBatch, resolve_device
from saewatch.encode.sae import LoadedSae, SaeExpectations, load_sae
from saewatch.encode.text import TokenizedText
from saewatch.models import FeatureBatch, LLMEvent, SparseCodes, TextField

logger = logging.getLogger(__name__)

_Row = tuple[np.ndarray, np.ndarray]
_F16_MAX = 65504.0
_EMPTY_ROW: _Row = (np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float16))


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
    expectations
        Healthy FVE/L0 ranges for the sanity check on the first tokens.
    sanity_tokens
        How many tokens the sanity check looks at (0 turns it off).
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
        self._sanity = SanityCheck(
            expectations or SaeExpectations(0.0, None, "none"), tokens_wanted=sanity_tokens
        )

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
            max_tokens_per_batch=settings.max_tokens_per_batch,
            use_chat_template=settings.use_chat_template,
        )
        name = model_name or DEFAULT_MODEL_NAME
        encoder_id = f"{name}/{hook.hook_name}/{loaded.sae_id}"
        if settings.threshold > 0:  # other thresholds give other codes: never mix them
            encoder_id += f"/threshold={settings.threshold:g}"
        return cls(
            reader,
            loaded.sae,
            encoder_id=encoder_id,
            threshold=settings.threshold,
            expectations=loaded.expectations,
            sanity_tokens=settings.sanity_tokens,
            model_name=name,
            sae_id=loaded.sae_id,
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
        codes = {
            field: self.encode_texts([e.text(field) for e in events], field)
            for field in ("prompt", "response")
        }
        return FeatureBatch(
            encoder_id=self.encoder_id,
            d_sae=self.d_sae,
            events=tuple(events),
            prompt=codes["prompt"],
            response=codes["response"],
        )

    def encode_texts(self, texts: Sequence[str], field: TextField) -> SparseCodes:
        """Sparse codes of ``texts`` read as ``field`` turns, in input order."""
        docs = self.reader.tokenize(texts, field)
        rows: list[_Row] = [_EMPTY_ROW] * len(docs)
        for doc_ids, batch_rows in self.reader.map_batches(docs, self._pool):
            for doc, row in zip(doc_ids, batch_rows, strict=True):
                rows[doc] = row
        return _to_codes(rows, docs)

    def _pool(self, batch: TokenBatch) -> tuple[list[int], list[_Row]]:
        """SAE-encode one batch's tokens and max-pool them per document."""
        with torch.inference_mode():
            feats = self.sae.encode(batch.acts)
            if self._sanity.wants_more:
                self._sanity.update(batch.acts, self.sae.decode(feats), feats)
            n_docs = len(batch.docs)
            pooled = torch.zeros(n_docs, self.d_sae, dtype=feats.dtype, device=feats.device)
            # SAE activations are >= 0, so starting from zeros is exact for amax.
            index = batch.doc_index.unsqueeze(1).expand_as(feats)
            pooled.scatter_reduce_(0, index, feats, "amax", include_self=True)
            rows, cols = (pooled > self.threshold).nonzero(as_tuple=True)
            # Clip so an outlier never becomes inf in float16.
            values = pooled[rows, cols].clamp(max=_F16_MAX).float().cpu().numpy().astype(np.float16)
            rows_np = rows.cpu().numpy()
            cols_np = cols.cpu().numpy().astype(np.int32)
        # nonzero() is row-major, so each document's features come out ascending.
        bounds = np.searchsorted(rows_np, np.arange(n_docs + 1))
        return batch.docs, [
            (cols_np[bounds[d] : bounds[d + 1]], values[bounds[d] : bounds[d + 1]])
            for d in range(n_docs)
        ]

    def dense_embed(self, texts: Sequence[str], field: TextField = "response") -> np.ndarray:
        """Mean-pooled hook activations per text (the dense-embedding drift baseline)."""
        return self.reader.dense_embed(texts, field)


def _to_codes(rows: list[_Row], docs: list[TokenizedText]) -> SparseCodes:
    return SparseCodes.from_arrays([r[0] for r in rows], [r[1] for r in rows],
                                   [d.n_tokens for d in docs], [d.truncated for d in docs])


__all__ = ["EncoderHealth", "Precision", "SAEEncoder"]
