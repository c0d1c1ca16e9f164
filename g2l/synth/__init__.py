"""Synthetic data for tests and the demo: slides, labelled benchmark tiles."""
