"""Output folders that appear complete or not at all.

A command that writes many files (label PNGs, seeds, pseudo labels) writes them into a staging
folder beside its ``--out`` and moves them there only when every file is written, so that a
failure half-way (a corrupt image, Ctrl-C) leaves ``--out`` as it was.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def staging_dir(out_dir: str | Path) -> Path:
    """The staging folder of ``out_dir``: the hidden sibling ``.<name>.partial``."""
    out_dir = Path(out_dir)
    return out_dir.parent / f".{out_dir.name}.partial"


@contextmanager
def staged_dir(out_dir: str | Path, *, publish_on_exit: bool = True) -> Iterator[Path]:
    """Yields an empty :func:`staging_dir` to write into. On success its entries move into
    ``out_dir`` (created if needed; entries of the same name are replaced, others kept); on
    failure it is removed and ``out_dir`` is untouched."""
    staging = staging_dir(out_dir)
    shutil.rmtree(staging, ignore_errors=True)  # left by a killed run
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if publish_on_exit:
        publish(staging, out_dir)


def publish(staging: str | Path, out_dir: str | Path) -> Path:
    """Moves the entries of ``staging`` into ``out_dir`` and removes ``staging``."""
    staging, out_dir = Path(staging), Path(out_dir)
    if not out_dir.exists():
        os.replace(staging, out_dir)
        return out_dir
    for entry in sorted(staging.iterdir()):
        target = out_dir / entry.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(entry, target)
    staging.rmdir()
    return out_dir
