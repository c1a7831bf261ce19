"""A Ray worker setup hook for the fault tests: a worker that is about to read an image with a marker file
beside it (``IMAGE.crash-once``) deletes the marker and dies on the spot, as a worker killed mid-shard would.
Deleting first makes it happen once, whichever worker gets there."""

from __future__ import annotations

import os
from pathlib import Path

CRASH_SUFFIX = ".crash-once"


def crash_once_on_marker() -> None:
    import onnxpred.datasets as datasets

    load_image = datasets.load_image

    def load_image_or_die(path):
        try:
            Path(f"{path}{CRASH_SUFFIX}").unlink()
        except FileNotFoundError:
            return load_image(path)
        os._exit(1)

    datasets.load_image = load_image_or_die
