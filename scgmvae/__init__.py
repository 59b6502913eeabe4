"""Gaussian-mixture variational autoencoders for single-cell data, built on scvi-tools."""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version

from . import datasets, model, module, pl, tl, train

try:
    __version__ = version("scgmvae")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["datasets", "model", "module", "pl", "tl", "train"]
