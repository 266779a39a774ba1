"""Errors shared by the stages and the CLI."""


class PermanentError(Exception):
    """A failure that retrying cannot fix (unusable data, impossible configuration); shown as it is."""
