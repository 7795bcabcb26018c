"""Exact unlearning: models whose deletion equals retraining without the deleted examples."""
