"""Evaluation: benefit-realisation metrics, honest uncertainty, privacy-safe reports."""
