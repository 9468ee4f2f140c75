"""Errors the CLIs print as one line instead of a traceback.

:class:`InputError` means "the user's input is wrong" (exit status 2);
:class:`RunAborted` means a long job stopped for a reason outside the program,
with its finished work saved (exit status 1). Everything else is a bug and
keeps its traceback.
"""


class InputError(ValueError):
    """Bad input from the user: a file, a name, an option value.  The message says what to do."""


class RunAborted(RuntimeError):
    """A long job stopped for a reason outside the program (say, the system killed a worker process).

    Finished work is saved; the message says what happened and how to resume.
    """
