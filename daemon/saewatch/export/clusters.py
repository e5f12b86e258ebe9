"""Capping streaming clusters per model version, shared by the metrics and the report page."""

from __future__ import annotations

from collections.abc import Sequence

from saewatch.models import ClusterShare


def capped_clusters(
    clusters: Sequence[ClusterShare], max_clusters: int
) -> list[tuple[list[str], float, int]]:
    """Per model version, the ``max_clusters`` largest clusters and one ``"other"`` remainder.

    Returns ``(labels, share, documents)`` with labels ``[model_id, model_version, cluster]``.

    >>> from saewatch.models import ClusterShare
    >>> cs = [ClusterShare(cluster=c, model_id="m", model_version="v", share=s, documents=d)
    ...       for c, s, d in [(0, 0.5, 50), (1, 0.3, 30), (2, 0.2, 20)]]
    >>> [(lab[2], share, n) for lab, share, n in capped_clusters(cs, 2)]
    [('0', 0.5, 50), ('1', 0.3, 30), ('other', 0.2, 20)]
    """
    by_version: dict[tuple[str, str], list[ClusterShare]] = {}
    for share in clusters:
        by_version.setdefault((share.model_id, share.model_version), []).append(share)
    rows: list[tuple[list[str], float, int]] = []
    for (model_id, version), shares in sorted(by_version.items()):
        shares.sort(key=lambda s: (-s.share, s.cluster))
        for share in shares[:max_clusters]:
            rows.append(([model_id, version, str(share.cluster)], share.share, share.documents))
        rest = shares[max_clusters:]
        if rest:
            rows.append(
                (
                    [model_id, version, "other"],
                    sum(s.share for s in rest),
                    sum(s.documents for s in rest),
                )
            )
    return rows
