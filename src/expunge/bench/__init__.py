"""Audits and benchmarks that run methods on scenarios (the layer users touch)."""
