"""Data sets: the thesis' toy blobs and the Kang et al. 2018 IFN-beta PBMC data."""

from __future__ import annotations

from ._kang import kang, kang_subset
from ._toy import toy_blobs

__all__ = ["kang", "kang_subset", "toy_blobs"]
