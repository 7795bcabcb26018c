"""Audit: metrics that compare an unlearned population with an oracle population.

Every metric follows the exact definitions in METRICS.md and its module exposes a
``DEFINITION`` id (e.g. ``"competition_f@neurips2023"``) that results files record.
Modules: ``scores`` (phi, margin, confidence), ``accuracy`` (FA/RA/TA/UA, Avg.Gap,
ToW), ``mia`` (MIA-Efficacy), ``competition`` (NeurIPS 2023 forgetting quality),
``klom`` (KLoM), ``lira`` (U-LiRA and ROC metrics), ``representation`` (linear CKA,
k-NN probe).
"""
