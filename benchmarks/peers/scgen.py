"""scGen (pertpy.tools.Scgen) as a peer of the perturbation benchmark.

Run with a Python that has ``pertpy[jax]`` (Python >= 3.12), e.g. through benchmarks/_peers.py:

    $SCGMVAE_SCGEN_PYTHON benchmarks/peers/scgen.py --train train.h5ad --control control.h5ad \
        --out predicted.h5ad --seed 0 --max-epochs 200 --batch-size 32

Trains scGen on the log1p(CP10k) training cells (as pertpy's scGen tutorial does on log-normalised
data), shifts the control cells' latent means by the stimulated - control difference of the
training latents (``Scgen.predict``, cell types balanced) and writes the decoded cells as they
come out, in log1p(CP10k) space. ``--seed`` seeds the split, minibatches and initialisation of the
training, and the cell subsampling of the prediction.
"""

from __future__ import annotations

import contextlib

from _cli import (
    SMOKE_EPOCHS,
    Timer,
    hide_own_folder,
    limit_threads,
    log_normalize,
    parser,
    read_inputs,
    seed_everything,
    write_prediction,
)

hide_own_folder()  # so that `import cpa` / `import scvi` find the installed packages

# the protocol of the earlier scGen measurement on the 832-cell Kang file
MAX_EPOCHS, BATCH_SIZE = 200, 32


@contextlib.contextmanager
def seeded_default_rng(seed: int):
    """Route ``np.random.default_rng()`` calls without a seed to streams derived from ``seed``.

    ``Scgen.predict`` balances and subsamples cells with ``np.random.default_rng()`` and takes
    no seed, so without this two runs of the same trained model give different deltas.
    """
    import numpy as np

    original = np.random.default_rng
    streams = np.random.SeedSequence(seed)

    def default_rng(seed_=None):
        return original(streams.spawn(1)[0] if seed_ is None else seed_)

    np.random.default_rng = default_rng
    try:
        yield
    finally:
        np.random.default_rng = original


def main() -> None:
    p = parser(__doc__.splitlines()[0], MAX_EPOCHS, BATCH_SIZE)
    p.add_argument(
        "--early-stopping-patience",
        type=int,
        default=0,
        help="stop after this many epochs without a better validation loss (0: off)",
    )
    args = p.parse_args()
    limit_threads(args.threads)
    seed_everything(args.seed)
    import pertpy as pt

    train, control = read_inputs(args)
    train, control = log_normalize(train), log_normalize(control)
    pt.tl.Scgen.setup_anndata(train, batch_key=args.condition_key, labels_key=args.label_key)
    model = pt.tl.Scgen(train)
    with Timer() as timer:
        model.train(
            max_epochs=SMOKE_EPOCHS if args.smoke else args.max_epochs,
            batch_size=args.batch_size,
            early_stopping=args.early_stopping_patience > 0,
            early_stopping_patience=max(args.early_stopping_patience, 1),
            seed=args.seed,
        )
    with seeded_default_rng(args.seed):
        predicted, _ = model.predict(
            ctrl_key=args.ctrl, stim_key=args.stim, adata_to_predict=control
        )
    write_prediction(args.out, control, predicted.X, timer, ("pertpy", "jax", "flax", "anndata"))


if __name__ == "__main__":
    main()
