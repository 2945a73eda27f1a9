"""Clarity: git-native CI orchestration (the controller side)."""

__version__ = "0.1.0"
