"""scPRAM (scpram) as a peer of the perturbation benchmark.

Run with a Python that has ``scpram`` (Python 3.11, see benchmarks/peers/README.md), e.g. through
benchmarks/_peers.py:

    $SCGMVAE_SCPRAM_PYTHON benchmarks/peers/scpram.py --train train.h5ad --control control.h5ad \
        --out predicted.h5ad --seed 0

Follows scPRAM's Kang tutorial (Tutorial/PBMC_cross_celltype_predict.ipynb): scPRAM's VAE with
its default network (latent 100, hidden 1000, input noise 0.1, KL weight 5e-4) trained on
log-normalised cells for 100 epochs of batches of 128 (learning rate 5e-4, no early stopping,
no validation split), then ``SCPRAM.predict`` with ``ratio=0.005``: optimal transport matches
the other types' control training cells to the stimulated training cells in the latent space,
the matched pairs give perturbation vectors, and the cells to predict are shifted by the
similarity-weighted mean of the vectors of the ``ratio`` share of those control cells most
similar to the first cell to predict (scPRAM reads the first row of its similarity matrix, so
all cells of a type get the same shift), then decoded. The decoded cells are written as they
come out, in log1p(CP10k) space (the tutorial's data are log-normalised; here normalised to
10,000 counts). Each cell type of the control cells is predicted in turn, from the training
cells plus these control cells.
"""

from __future__ import annotations

from _cli import (
    SMOKE_EPOCHS,
    Timer,
    dense,
    hide_own_folder,
    limit_threads,
    parser,
    read_dense_log_normalized,
    seed_everything,
    write_prediction,
)

hide_own_folder()  # so that `import scpram` finds the installed package, not this script

# scPRAM's Kang tutorial: train_SCPRAM(train, epochs=100) with its default batch size of 128
# and learning rate, and predict(..., ratio=0.005)
MAX_EPOCHS, BATCH_SIZE, LEARNING_RATE, RATIO = 100, 128, 5e-4, 0.005
PRED_KEY = "_predicted"


def predict_cell_type(model, train, control, cell_type: str, args):
    """scPRAM's prediction of the ``cell_type`` cells of ``control``, in their order."""
    import anndata

    labels = train.obs[args.label_key].astype(str)
    conditions = train.obs[args.condition_key].astype(str)
    # the control cells to predict stand in for the training's own control cells of that type
    others = train[~((labels == cell_type) & (conditions == args.ctrl))]
    cells = control[control.obs[args.label_key].astype(str) == cell_type].copy()
    cells.obs_names = [f"control-{name}" for name in cells.obs_names]
    keys = [args.condition_key, args.label_key]
    adata = anndata.concat([others, cells], merge="same")
    adata.obs = adata.obs[keys].astype(str)
    key_dic = {
        "condition_key": args.condition_key,
        "cell_type_key": args.label_key,
        "ctrl_key": args.ctrl,
        "stim_key": args.stim,
        "pred_key": PRED_KEY,
    }
    predicted = model.predict(
        train_adata=adata, cell_to_pred=cell_type, key_dic=key_dic, ratio=args.ratio
    )
    return predicted[cells.obs_names]


def main() -> None:
    p = parser(__doc__.splitlines()[0], MAX_EPOCHS, BATCH_SIZE)
    p.add_argument("--ratio", type=float, default=RATIO, help="share of cells attended to")
    args = p.parse_args()
    limit_threads(args.threads)
    seed_everything(args.seed)
    import numpy as np
    import torch
    from scpram import models

    torch.set_num_threads(args.threads)
    train, control = read_dense_log_normalized(args)
    model = models.SCPRAM(input_dim=train.n_vars, device=torch.device("cpu"))
    model = model.to(model.device)
    with Timer() as timer:
        model.train_SCPRAM(
            train,
            epochs=SMOKE_EPOCHS if args.smoke else args.max_epochs,
            batch_size=args.batch_size,
            lr=LEARNING_RATE,
        )
    expression = np.zeros(control.shape, dtype=np.float32)
    cell_types = control.obs[args.label_key].astype(str)
    for cell_type in sorted(set(cell_types)):
        predicted = predict_cell_type(model, train, control, cell_type, args)
        expression[np.flatnonzero(cell_types == cell_type)] = dense(predicted.X)
    write_prediction(args.out, control, expression, timer, ("scpram", "torch", "POT", "scanpy"))


if __name__ == "__main__":
    main()
