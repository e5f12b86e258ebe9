"""Themes: a comparison's significant features grouped by co-firing, one finding per phenomenon.

A version change rarely moves one feature: a longer, list-heavy answer raises a dozen features
that fire on the same documents. Listing them one by one buries the second phenomenon under the
first. ``group_themes`` takes the significant features of both directions (each direction ranked
by change in share, as ``top_up``/``top_down``) and the co-occurrence of those features over both
sides' recent events (``RetrievalSource.cooccurrence``: the retrieval ring, any feature, not only
the most frequent), and agglomerates them per direction by **average linkage on NPMI**:

* the score of a pair is its within-version NPMI (``CooccurrenceCounts.npmi``), except that a
  pair seen together in fewer than :data:`MIN_JOINT_DOCUMENTS` documents cannot support a merge
  (its score is capped at 0: two rare features that met once are not a theme);
* the two groups with the highest mean score over their cross pairs merge while that mean is at
  least :data:`NPMI_LINK`; ties go to the groups with the strongest leaders (deterministic);
* a feature with no partner is a theme of its own.

Average linkage rather than connected components: one generic feature that co-fires with two
unrelated groups would chain them into one under single linkage.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from saewatch.models import CooccurrenceCounts, EffectBasis, FeatureDelta, Theme

logger = logging.getLogger(__name__)

# Features co-fire when their NPMI is at least this. 0 is independence and 1 always together;
# 0.4 keeps pairs where each is far likelier with the other (at 10% each, p(both) >= ~4.5%,
# 4.5x chance) and leaves out loosely related features that only share a topic (~0.1-0.3).
NPMI_LINK = 0.4
# Documents a pair must share before it can link two features: NPMI of features that fired
# once each, on the same document, is 1.
MIN_JOINT_DOCUMENTS = 5
# Strongest significant features per direction considered (both directions together stay
# within the 64 features one co-occurrence query can count).
THEME_CANDIDATES = 30
THEME_LABELS = 3  # labels of the first members a theme shows
# The ring indexes an event's strongest retrieval_max_features features only. Where more than
# this share of a side's ring documents reached that cap, shares of documents with any member
# would miss weaker present members (dense codes: ~1,400 present of 4,096), so a theme falls
# back to the leader's document frequencies from the counts.
MAX_SATURATED_SHARE = 0.01


def group_themes(
    deltas: Sequence[FeatureDelta],
    counts: CooccurrenceCounts | None,
    sides: tuple[str, str] | None = None,
    top_k: int = 10,
    min_documents: int = 1,
) -> tuple[tuple[Theme, ...], int]:
    """Themes of ``deltas`` (both directions, each ranked by effect) and how many there are
    before the cap of ``top_k`` per direction; each direction's themes rank by their leader's
    change, largest first.

    ``counts`` gives the NPMI (``None``: every feature is its own theme). With ``sides``
    (baseline and candidate versions, both among ``counts.versions`` with at least
    ``min_documents`` documents, at most :data:`MAX_SATURATED_SHARE` of them saturated) a
    theme's effect is the change in share of the ring's documents where any member is present;
    otherwise the leader's change in document frequency over all events.

    Examples
    --------
    >>> import numpy as np
    >>> from saewatch.models import CooccurrenceCounts, FeatureDelta
    >>> def delta(f, fa, fb):
    ...     return FeatureDelta(feature=f, count_baseline=0, count_candidate=0, freq_baseline=fa,
    ...                         freq_candidate=fb, log_odds_ratio=fb - fa, p_value=1e-9,
    ...                         q_value=1e-8, direction="up" if fb > fa else "down")
    >>> joint = np.array([[[40, 30, 0], [30, 35, 0], [0, 0, 20]]])  # 1 and 2 together
    >>> npmi = np.array([[1, .7, -1], [.7, 1, -1], [-1, -1, 1]])
    >>> counts = CooccurrenceCounts(model_id="m", field="response", versions=("v1",),
    ...     features=(1, 2, 7), n_documents=np.array([100]), saturated=np.array([0]),
    ...     joint=joint, npmi=npmi,
    ...     masks=np.zeros(0, np.uint64), mask_version=np.zeros(0, np.int64))
    >>> themes, n = group_themes([delta(1, .1, .5), delta(2, .1, .4), delta(7, .3, .1)], counts)
    >>> [(t.id, t.features, t.effect_basis, round(t.effect, 2)) for t in themes], n
    ([('up-1', (1, 2), 'leader', 0.4), ('down-7', (7,), 'leader', -0.2)], 2)
    """
    basis: EffectBasis = "any_member" if _ring_shares(counts, sides, min_documents) else "leader"
    out: list[Theme] = []
    total = 0
    for direction in ("up", "down"):
        mine = [d for d in deltas if d.direction == direction]
        groups = _agglomerate(_scores(mine, counts)) if mine else []
        themes = [_theme(direction, [mine[i] for i in g], counts, sides, basis) for g in groups]
        # By the leader's change, as the feature tables: an any-member share starts higher on
        # the baseline (any of 13 features is there more often than one), so a large theme's
        # effect is often the smaller and it would sink. Ties by the leader's q, then its id.
        themes.sort(key=lambda t: (-abs(t.leader_effect), t.q_value, t.leader))
        total += len(themes)
        out += themes[:top_k]
    return tuple(out), total


def _ring_shares(counts: CooccurrenceCounts | None, sides: tuple[str, str] | None,
                 min_documents: int) -> bool:
    """Whether the ring's documents give both sides' any-member shares."""
    if counts is None or sides is None or sides[0] == sides[1]:
        return False
    for v in sides:
        if v not in counts.versions:
            return False
        n, cut = (int(a[counts.versions.index(v)]) for a in (counts.n_documents, counts.saturated))
        if n < max(min_documents, 1) or cut > MAX_SATURATED_SHARE * n:
            return False
    return True


def _scores(deltas: Sequence[FeatureDelta], counts: CooccurrenceCounts | None) -> np.ndarray:
    """Pairwise link scores of ``deltas``: NPMI, capped at 0 for pairs with too little support
    and -1 for a feature the counts do not cover."""
    n = len(deltas)
    score = np.full((n, n), -1.0)
    np.fill_diagonal(score, 1.0)
    if counts is None:
        return score
    pos = [counts.features.index(d.feature) if d.feature in counts.features else -1
           for d in deltas]
    known = np.array([p >= 0 for p in pos])
    if not known.any():
        return score
    at = np.array([p for p in pos if p >= 0])
    joint = counts.joint.sum(axis=0)[np.ix_(at, at)]
    sub = counts.npmi[np.ix_(at, at)]
    sub = np.where(joint >= MIN_JOINT_DOCUMENTS, sub, np.minimum(sub, 0.0))
    score[np.ix_(known, known)] = sub
    np.fill_diagonal(score, 1.0)
    return score


def _agglomerate(score: np.ndarray) -> list[list[int]]:
    """Average-linkage groups of ``score``'s rows (row order = effect rank), each sorted.

    >>> _agglomerate(np.array([[1, .9, .5], [.9, 1, .1], [.5, .1, 1]]))  # mean(.5, .1) < 0.4
    [[0, 1], [2]]
    """
    groups = [[i] for i in range(len(score))]
    # Summed scores between groups: merging adds rows and columns, so every mean is one division.
    total = np.array(score, dtype=np.float64)
    while len(groups) > 1:
        sizes = np.array([len(g) for g in groups], dtype=np.float64)
        mean = total / np.outer(sizes, sizes)
        mean[np.tril_indices(len(groups))] = -np.inf
        # argmax takes the first maximum in row order: ties go to the groups with the
        # strongest leaders.
        a, b = divmod(int(np.argmax(mean)), len(groups))
        if mean[a, b] < NPMI_LINK:
            break
        groups[a] = sorted(groups[a] + groups.pop(b))
        total[a] += total[b]
        total[:, a] += total[:, b]
        total = np.delete(np.delete(total, b, axis=0), b, axis=1)
    return groups


def _theme(
    direction: str, members: list[FeatureDelta], counts: CooccurrenceCounts | None,
    sides: tuple[str, str] | None, basis: EffectBasis,
) -> Theme:
    leader = members[0]
    share_a, share_b = leader.freq_baseline, leader.freq_candidate
    if basis == "any_member" and counts is not None and sides is not None:
        present = [d.feature for d in members if d.feature in counts.features]
        docs = counts.any_present(present)
        a, b = (counts.versions.index(v) for v in sides)
        share_a = float(docs[a] / counts.n_documents[a])
        share_b = float(docs[b] / counts.n_documents[b])
    cohesion = None
    if len(members) > 1 and counts is not None:
        pos = [counts.features.index(d.feature) for d in members if d.feature in counts.features]
        sub = counts.npmi[np.ix_(pos, pos)]
        cohesion = float(sub[np.triu_indices(len(pos), 1)].mean())
    labels = tuple(d.label for d in members if d.label)[:THEME_LABELS]
    return Theme(
        id=f"{direction}-{leader.feature}", direction=leader.direction,
        features=tuple(d.feature for d in members), labels=labels,
        effect=share_b - share_a, share_baseline=share_a, share_candidate=share_b,
        effect_basis=basis, leader_effect=leader.freq_candidate - leader.freq_baseline,
        q_value=leader.q_value, cohesion=cohesion,
        examples_baseline=leader.examples_baseline, examples_candidate=leader.examples_candidate,
    )
