"""The kit's own error type: one clear sentence naming the thing and the fix."""


class KitError(ValueError):
    """A problem the user can fix (bad params, missing file, malformed input).

    The CLI prints only the message, never a traceback from deep inside.
    """
