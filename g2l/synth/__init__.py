"""Synthetic data for tests and the demo: slides (g2l.synth.slides), benchmarks (g2l.synth.benchmark)."""
