"""Errors raised at the library's boundaries (files, configs, checkpoints).

Each message names the file or key and says what is wrong, in the user's words.
"""

import re


class AGMMError(Exception):
    """Base class of every error the library raises on bad input.

    An error raised inside a DataLoader worker comes back re-created by PyTorch with the worker's
    whole traceback as its message; the constructor keeps only the original message, so the
    error reads the same with ``num_workers=0`` and ``num_workers=N``.
    """

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str):
            args = (_without_worker_traceback(args[0], type(self).__name__),)
        super().__init__(*args)


def _without_worker_traceback(message: str, class_name: str) -> str:
    """The original message of "Caught X in DataLoader worker process N.\\nOriginal Traceback
    ...\\nmodule.X: message" (torch's ``ExceptionWrapper.reraise``); other messages unchanged."""
    if not message.startswith("Caught ") or "Original Traceback" not in message:
        return message
    pattern = rf"^(?:[\w.]+\.)?{re.escape(class_name)}: "  # the traceback's last line
    starts = [match.end() for match in re.finditer(pattern, message, re.MULTILINE)]
    return message[starts[-1] :].rstrip("\n") if starts else message


class DataError(AGMMError):
    """A dataset or image file is missing, unreadable, or inconsistent."""


class LabelError(DataError):
    """A label file holds values or sizes that do not fit the dataset."""


class ConfigError(AGMMError):
    """A configuration key is unknown, has the wrong type, or names a missing path."""


class CheckpointError(AGMMError):
    """A checkpoint is unreadable or does not fit the model or dataset it is used with."""
