from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

# Size of the class-specific part of a condition shift relative to the shared part: the thesis
# (ch. 10) describes the condition effect as "a small random shift plus some noise".
_CLASS_SPECIFIC_SHIFT = 0.25
# Expected count of a gene at blob position 0 when ``counts=True``; keeps most genes non-zero.
_COUNTS_BASE_RATE = 5.0


def toy_blobs(
    n_cells_per_group: int = 200,
    n_classes: int = 5,
    n_conditions: int = 2,
    n_dims: int = 16,
    class_scale: float = 6.0,
    condition_scale: float = 2.0,
    noise: float = 1.0,
    counts: bool = False,
    seed: int | None = 0,
) -> ad.AnnData:
    """Simulate Gaussian blobs with classes and conditions, the toy data of the thesis (ch. 10).

    Every (class, condition) pair is an isotropic Gaussian blob. The class centres point in
    mutually orthogonal random directions, so any two of them are exactly ``class_scale`` apart.
    The first condition (``"control"``) is the reference; every other condition moves each class
    by a shift of length about ``condition_scale`` that is shared by all classes plus a smaller
    class-specific part. With the defaults the classes are far apart compared with the noise and
    the condition effect, so an unsupervised mixture model can recover them.

    Parameters
    ----------
    n_cells_per_group
        Number of cells in each (class, condition) group.
    n_classes
        Number of classes; at most ``n_dims``.
    n_conditions
        Number of conditions. Two conditions are named ``"control"`` and ``"stimulated"``; with
        more than two they are ``"condition_0"``, ``"condition_1"``, … (the first unshifted).
    n_dims
        Number of features (dimensions, or genes when ``counts=True``).
    class_scale
        Distance between any two class centres, in the same units as ``noise``.
    condition_scale
        Approximate length of the shift that a non-reference condition applies to a class.
    noise
        Standard deviation of every blob along each dimension.
    counts
        If `True`, return integer counts instead of real values: each cell's blob position is the
        log-rate of a Poisson draw, ``x ~ Poisson(5 * exp(position))``. Because the position
        itself is Gaussian, the counts are over-dispersed (Poisson-log-normal), which suits
        tests of count likelihoods such as ``"nb"`` and ``"zinb"``.
    seed
        Seed of the :class:`numpy.random.Generator`; the same seed gives identical data and
        `None` draws fresh randomness.

    Returns
    -------
    AnnData with ``n_classes * n_conditions * n_cells_per_group`` cells and ``n_dims`` variables
    (``"dim_0"``, ``"dim_1"``, …). ``.X`` is a dense float32 array (integer-valued if
    ``counts=True``). ``obs["cell_type"]`` (``"class_0"``, …) and ``obs["condition"]`` are
    categorical. ``uns["toy_blobs"]`` holds the parameters together with the ``class_centers``
    (classes × dims) and ``condition_shifts`` (classes × conditions × dims) that were drawn.

    Examples
    --------
    >>> adata = toy_blobs()
    >>> adata.shape
    (2000, 16)
    """
    _check_arguments(
        n_cells_per_group, n_classes, n_conditions, n_dims, class_scale, condition_scale, noise
    )

    rng = np.random.default_rng(seed)
    # Orthonormal columns scaled by 1/sqrt(2) put every pair of centres exactly class_scale apart.
    basis, _ = np.linalg.qr(rng.standard_normal((n_dims, n_classes)))
    class_centers = basis.T * (class_scale / np.sqrt(2.0))

    shared = _unit_vectors(rng, (n_conditions, n_dims))
    specific = _unit_vectors(rng, (n_classes, n_conditions, n_dims))
    condition_shifts = condition_scale * (shared[None] + _CLASS_SPECIFIC_SHIFT * specific)
    condition_shifts[:, 0] = 0.0

    class_idx = np.repeat(np.arange(n_classes), n_conditions * n_cells_per_group)
    condition_idx = np.tile(np.repeat(np.arange(n_conditions), n_cells_per_group), n_classes)
    means = class_centers[class_idx] + condition_shifts[class_idx, condition_idx]
    positions = means + noise * rng.standard_normal(means.shape)
    if counts:
        x = rng.poisson(_COUNTS_BASE_RATE * np.exp(positions))
    else:
        x = positions

    obs = _blob_obs(class_idx, condition_idx, n_classes, n_conditions)
    var = pd.DataFrame(index=[f"dim_{j}" for j in range(n_dims)])
    adata = ad.AnnData(X=x.astype(np.float32), obs=obs, var=var)
    adata.uns["toy_blobs"] = {
        "n_cells_per_group": n_cells_per_group,
        "n_classes": n_classes,
        "n_conditions": n_conditions,
        "n_dims": n_dims,
        "class_scale": class_scale,
        "condition_scale": condition_scale,
        "noise": noise,
        "counts": counts,
        "seed": seed,
        "class_centers": class_centers,
        "condition_shifts": condition_shifts,
    }
    return adata


def _check_arguments(
    n_cells_per_group: int,
    n_classes: int,
    n_conditions: int,
    n_dims: int,
    class_scale: float,
    condition_scale: float,
    noise: float,
) -> None:
    """Raise a ValueError that names the first invalid argument of :func:`toy_blobs`."""
    for name, value in {
        "n_cells_per_group": n_cells_per_group,
        "n_classes": n_classes,
        "n_conditions": n_conditions,
        "n_dims": n_dims,
    }.items():
        if value < 1:
            raise ValueError(f"`{name}` must be a positive integer, got {value}.")
    if n_classes > n_dims:
        raise ValueError(
            f"`n_classes` ({n_classes}) must not exceed `n_dims` ({n_dims}): class centres lie "
            "along orthogonal directions. Increase `n_dims` or lower `n_classes`."
        )
    if class_scale < 0 or condition_scale < 0:
        raise ValueError("`class_scale` and `condition_scale` must be non-negative.")
    if noise <= 0:
        raise ValueError(f"`noise` must be positive, got {noise}.")


def _blob_obs(
    class_idx: np.ndarray, condition_idx: np.ndarray, n_classes: int, n_conditions: int
) -> pd.DataFrame:
    """Categorical class and condition of every cell, with the toy data's names."""
    class_names = [f"class_{k}" for k in range(n_classes)]
    if n_conditions <= 2:
        condition_names = ["control", "stimulated"][:n_conditions]
    else:
        condition_names = [f"condition_{k}" for k in range(n_conditions)]
    return pd.DataFrame(
        {
            "cell_type": pd.Categorical.from_codes(class_idx, categories=class_names),
            "condition": pd.Categorical.from_codes(condition_idx, categories=condition_names),
        },
        index=[f"cell_{i}" for i in range(len(class_idx))],
    )


def _unit_vectors(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Draw random directions uniformly on the unit sphere along the last axis."""
    v = rng.standard_normal(shape)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)
