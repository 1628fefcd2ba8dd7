"""Errors raised at the library's boundaries (files, configs, checkpoints).

Each message names the file or key and says what is wrong, in the user's words.
"""


class AGMMError(Exception):
    """Base class of every error the library raises on bad input."""


class DataError(AGMMError):
    """A dataset or image file is missing, unreadable, or inconsistent."""


class LabelError(DataError):
    """A label file holds values or sizes that do not fit the dataset."""


class ConfigError(AGMMError):
    """A configuration key is unknown, has the wrong type, or names a missing path."""


class CheckpointError(AGMMError):
    """A checkpoint is unreadable or does not fit the model or dataset it is used with."""
