"""Errors that carry a one-line, user-facing message.

Command-line entry points catch :class:`UserError` and print only its message, so a
user sees one clear line instead of a traceback.
"""


class UserError(Exception):
    """A problem with the user's input (paths, arguments, files) rather than a bug."""


class VideoError(UserError):
    """A video cannot be opened or does not hold the frames asked for."""


class CheckpointError(UserError):
    """A checkpoint is missing, corrupt, or belongs to another model/config."""
