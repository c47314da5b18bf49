"""Scoring: pairing hypotheses with references, error rates, transcript files."""
