"""The metrics the tasks report: macro-F1 from a confusion matrix, word and character error
rates (jiwer), corpus BLEU and chrF (sacreBLEU)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def macro_f1(confusion: np.ndarray) -> float:
    """Unweighted mean of the per-class F1 from a confusion matrix (rows true, columns
    predicted); a class never true nor predicted counts as F1 = 0 only if it was true."""
    tp = np.diag(confusion).astype(float)
    pred, true = confusion.sum(0), confusion.sum(1)
    f1 = np.where(pred + true > 0, 2 * tp / np.maximum(pred + true, 1), 0.0)
    present = true > 0
    return float(f1[present].mean()) if present.any() else 0.0


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, float]:
    """Corpus WER and CER (jiwer): total edits over total reference words or characters."""
    import jiwer

    return {
        "wer": float(jiwer.wer(list(references), list(hypotheses))),
        "cer": float(jiwer.cer(list(references), list(hypotheses))),
    }


def bleu_chrf(hyps: list[str], refs: list[str]) -> tuple[float, float, str, str]:
    """Corpus sacreBLEU and chrF of detokenised hypotheses, with their signatures."""
    from sacrebleu.metrics import BLEU, CHRF

    bleu, chrf = BLEU(), CHRF()
    b = bleu.corpus_score(hyps, [refs])
    c = chrf.corpus_score(hyps, [refs])
    return b.score, c.score, str(bleu.get_signature()), str(chrf.get_signature())
