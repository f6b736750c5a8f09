"""Shipyard: a production-ready backend for MVP apps."""

__version__ = "0.1.0"
