"""Errors of the command line."""

from __future__ import annotations


class UserError(Exception):
    """A mistake of the user's: printed as `clarity: error: ...`, never as a traceback."""
