"""Calibration and out-of-distribution metrics: ECE with its reliability diagram, and AUROC.

Origin: written for dgm-course (MIT licence).

Expected calibration error (Guo et al. 2017, Eq. 3; JEM reports it for its classifiers): the
test images are put in M equal-width bins by their confidence max_y p(y|x), and

    ECE = sum_m |B_m| / n * |acc(B_m) - conf(B_m)|

acc and conf the accuracy and the mean confidence of bin m. A bin is (lo, hi], the first [0, hi].

AUROC of a score s that should be higher in-distribution (JEM Sec. 5.3): the probability that
an in-distribution image scores above an out-of-distribution one, ties counted one half:

    AUROC = P(s(x_in) > s(x_out)) + 0.5 P(s(x_in) = s(x_out))

computed here from ranks (the Mann-Whitney U statistic), exact and O(n log n).
"""

from __future__ import annotations

import torch

ECE_BINS = 20  # equal-width confidence bins


def reliability(
    confidence: torch.Tensor, correct: torch.Tensor, bins: int = ECE_BINS
) -> dict[str, torch.Tensor]:
    """Per bin: ``count``, ``accuracy`` and ``confidence`` (0 for empty bins), and the bin
    ``edges`` [bins + 1]."""
    confidence = confidence.double().flatten()
    correct = correct.double().flatten()
    edges = torch.linspace(0.0, 1.0, bins + 1, dtype=torch.float64)
    # bin m holds (edges[m], edges[m+1]]; confidence 0 goes to bin 0
    index = (torch.bucketize(confidence, edges, right=False) - 1).clamp(0, bins - 1)
    count = torch.bincount(index, minlength=bins).double()
    acc_sum = torch.bincount(index, weights=correct, minlength=bins)
    conf_sum = torch.bincount(index, weights=confidence, minlength=bins)
    safe = count.clamp(min=1.0)
    return {
        "edges": edges,
        "count": count,
        "accuracy": acc_sum / safe,
        "confidence": conf_sum / safe,
    }


def ece(confidence: torch.Tensor, correct: torch.Tensor, bins: int = ECE_BINS) -> float:
    """Expected calibration error (in [0, 1]) of predictions with these confidences and
    correctness (0/1)."""
    r = reliability(confidence, correct, bins)
    n = r["count"].sum()
    return float((r["count"] / n * (r["accuracy"] - r["confidence"]).abs()).sum())


def auroc(score_in: torch.Tensor, score_out: torch.Tensor) -> float:
    """Area under the ROC curve of ``score`` separating in-distribution (higher) from
    out-of-distribution inputs: the Mann-Whitney U statistic over n_in * n_out, ties as 1/2."""
    s_in = score_in.double().flatten()
    s_out = score_out.double().flatten()
    scores = torch.cat([s_in, s_out])
    order = torch.argsort(scores, stable=True)
    sorted_scores = scores[order]
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    # average the ranks of tied scores
    unique, inverse, counts = torch.unique_consecutive(
        sorted_scores, return_inverse=True, return_counts=True
    )
    ends = torch.cumsum(counts, 0).double()
    mean_rank = ends - (counts.double() - 1.0) / 2.0
    ranks[order] = mean_rank[inverse]
    n_in, n_out = len(s_in), len(s_out)
    u = ranks[:n_in].sum() - n_in * (n_in + 1) / 2.0
    return float(u / (n_in * n_out))


def roc_curve(score_in: torch.Tensor, score_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(false-positive rate, true-positive rate) over all thresholds, in-distribution positive."""
    scores = torch.cat([score_in.double().flatten(), score_out.double().flatten()])
    labels = torch.cat([torch.ones(score_in.numel()), torch.zeros(score_out.numel())]).double()
    order = torch.argsort(scores, descending=True, stable=True)
    labels = labels[order]
    tpr = torch.cat([torch.zeros(1, dtype=torch.float64), labels.cumsum(0) / labels.sum()])
    fpr = torch.cat(
        [torch.zeros(1, dtype=torch.float64), (1 - labels).cumsum(0) / (1 - labels).sum()]
    )
    return fpr, tpr
