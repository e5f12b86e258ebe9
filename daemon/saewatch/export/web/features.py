"""One feature: ``/api/v1/features/{feature}`` (JSON) and ``/features/{feature}`` (its page).

Both join two sources: the feature's card, built offline from a held-out corpus and loaded once
(:class:`~saewatch.models.cards.FeatureCards`: top contexts with per-token activations,
density, top tokens, NPMI neighbours, context label), and what the live state knows, from the
frozen view published with the latest report (its share per model version and window, the
strongest live examples, document-level NPMI neighbours). Either may be missing: without cards
the answer is the live part alone, as before; without a view yet, the card alone (the JSON
route then answers 503 only when there is no card either).
"""

from __future__ import annotations

import logging
from collections import ChainMap
from collections.abc import Mapping

from saewatch.errors import SaewatchError
from saewatch.export.exceptions import BadRequest, NotFound, Unavailable
from saewatch.export.web.api import JsonApi, feature_labels
from saewatch.export.web.feature_page import render_feature_page
from saewatch.export.web.routing import Param, Request, Response, Route
from saewatch.models import FeatureDetail
from saewatch.models.cards import FeatureCard, FeatureCards

logger = logging.getLogger(__name__)

HTML = "text/html; charset=utf-8"
_FEATURE = Param("feature", "path", "integer", "SAE feature id.", required=True, minimum=0)


class FeatureDetailOut(FeatureDetail):
    """One feature: live frequencies per version and window, examples and NPMI neighbours
    from the state, and its card (``null`` where the server has no cards).

    >>> FeatureDetailOut(feature=3).model_dump()["card"] is None
    True
    """

    card: FeatureCard | None = None


class FeatureEndpoints:
    """The feature route of the JSON API and the feature page.

    Parameters
    ----------
    api
        The JSON API (its state view, snippet policy and encoding).
    cards
        The SAE's feature cards, or ``None``.
    csp
        Content-Security-Policy of the page (the report page's).

    Examples
    --------
    >>> from saewatch.config import WebSettings
    >>> from saewatch.export.base import ReportHolder
    >>> from saewatch.models.cards import CardContext
    >>> card = FeatureCard(feature=1, label="capital", density=0.01, contexts=(
    ...     CardContext(tokens=("The", " capital"), activations=(0.0, 2.5)),))
    >>> ends = FeatureEndpoints(JsonApi(ReportHolder(), WebSettings()),
    ...                         FeatureCards(d_sae=4, cards=[card]), csp="default-src 'none'")
    >>> ends.detail(1).card.label, ends.detail(1).frequencies  # no state view yet
    ('capital', ())
    >>> ends.detail(9)
    Traceback (most recent call last):
    ...
    saewatch.export.exceptions.NotFound: feature 9: the SAE has 4 features
    """

    def __init__(self, api: JsonApi, cards: FeatureCards | None, csp: str) -> None:
        self.api = api
        self.csp = csp
        self._cards: tuple[FeatureCards | None, Mapping[int, str]] = (None, {})
        self.use(cards)

    @property
    def cards(self) -> FeatureCards | None:
        return self._cards[0]

    def use(self, cards: FeatureCards | None) -> None:
        """Serve ``cards`` from now on (the app sets them once it knows its encoder); one
        reference swap, so a request sees the old cards or the new, never a mix."""
        self._cards = (cards, cards.labels() if cards is not None else {})

    def labels(self) -> Mapping[int, str]:
        """Labels by feature: the latest report's first, else the cards'."""
        return ChainMap(feature_labels(self.api.holder.latest), dict(self._cards[1]))

    def detail(self, feature: int) -> FeatureDetailOut:
        """The card and the live detail of ``feature`` (see the module docstring)."""
        cards = self.cards
        if cards is not None and feature >= cards.d_sae:
            raise NotFound(f"feature {feature}: the SAE has {cards.d_sae} features")
        card = cards.get(feature) if cards is not None else None
        labels = self.labels()
        try:
            state = self.api.state_queries()
        except Unavailable:
            if card is None:
                raise
            return FeatureDetailOut(feature=feature, label=labels.get(feature), card=card)
        try:
            live = state.feature_detail(feature, labels=labels)
        except (SaewatchError, LookupError) as exc:
            raise NotFound(f"feature {feature}: {exc}") from exc
        except ValueError as exc:
            raise BadRequest(f"feature {feature}: {exc}") from exc
        return FeatureDetailOut(
            feature=feature, label=live.label or labels.get(feature),
            frequencies=live.frequencies, examples=live.examples, neighbours=live.neighbours,
            card=card)

    def feature(self, request: Request) -> Response:
        return self.api.json_response(self.detail(_feature(request)))

    def page(self, request: Request) -> Response:
        feature = _feature(request)
        status = 200
        try:
            detail: FeatureDetailOut | None = self.detail(feature)
        except (NotFound, Unavailable) as exc:
            detail, status = None, exc.status
            logger.debug("feature page %d: %s", feature, exc)
        html = render_feature_page(feature, detail, self.labels(),
                                   self.api.web.serve_snippets)
        return Response(status, html.encode(), HTML, {"Content-Security-Policy": self.csp})

    def routes(self) -> list[Route]:
        return [
            Route(
                "feature",
                "/api/v1/features/{feature}",
                "One feature: its card (top contexts with per-token activations, density, top "
                "tokens, NPMI neighbours, label) and, live, its frequency per version and "
                "window, examples and NPMI neighbours",
                self.feature,
                schema=FeatureDetailOut,
                params=(_FEATURE,),
            ),
            Route("feature_page", "/features/{feature}", "The feature's page", self.page,
                  content_type=HTML, params=(_FEATURE,), tag="report"),
        ]


def _feature(request: Request) -> int:
    value = request.params["feature"]
    if not isinstance(value, int):
        raise BadRequest(f"feature: expected an integer, got {value!r}")
    return value
