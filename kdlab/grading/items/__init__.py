"""Graded items, one module ``lNN.py`` per lesson, each with a list ``ITEMS``."""
