"""Exact unlearning: models whose deletions equal retraining without the deleted examples, and the deletion ledger.

- :class:`~expunge.exact.sisa.SisaModel`: sharded, sliced training whose deletions retrain only what saw the data;
- :class:`~expunge.exact.closed_form.ClosedFormModel`: a ridge head on frozen features, deleted from by a Woodbury
  down-date;
- :class:`~expunge.exact.ledger.Ledger`: the append-only, hash-chained record of deletion requests;
- :class:`~expunge.exact.folder.ModelFolder`: a model, its ledger and its receipts in one folder.
"""
from expunge.exact.closed_form import ClosedFormModel, RidgeHead, fit_heads
from expunge.exact.folder import (
           KINDS,
           ModelFolder,
           Receipt,
           fit_closed_form_folder,
           register_kind,
           train_sisa_folder,
)
from expunge.exact.ledger import Ledger, LedgerEntry, Verification
from expunge.exact.sisa import DeletionCost, SisaModel

__all__ = [
           "KINDS",
           "ClosedFormModel",
           "DeletionCost",
           "Ledger",
           "LedgerEntry",
           "ModelFolder",
           "Receipt",
           "RidgeHead",
           "SisaModel",
           "Verification",
           "fit_closed_form_folder",
           "fit_heads",
           "register_kind",
           "train_sisa_folder",
]
