"""Errors that mean "the user's input is wrong".

The CLIs print these as one line and exit with status 2; everything else is a
bug and keeps its traceback.
"""


class InputError(ValueError):
    """Bad input from the user: a file, a name, an option value.  The message says what to do."""
