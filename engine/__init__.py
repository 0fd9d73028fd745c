"""Vigil: attested VM placement with predictive patching."""

__version__ = "0.1.0"
