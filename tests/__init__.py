"""Scissor Stream test suite."""
