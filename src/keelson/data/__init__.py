"""Data stages: read sources, validate contracts, integrate, profile."""
