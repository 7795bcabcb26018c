"""Exact unlearning: models whose deletions equal retraining without the deleted examples, and the deletion ledger."""
