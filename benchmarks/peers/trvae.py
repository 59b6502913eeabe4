"""trVAE (scArches' scarches.models.TRVAE) as a peer of the perturbation benchmark.

Run with a Python that has ``scarches`` (Python 3.11, see benchmarks/peers/README.md), e.g.
through benchmarks/_peers.py:

    $SCGMVAE_TRVAE_PYTHON benchmarks/peers/trvae.py --train train.h5ad --control control.h5ad \
        --out predicted.h5ad --seed 0

Follows scArches' trVAE perturbation-prediction tutorial (notebooks/
trvae_perturbation_prediction.ipynb; scArches has no Kang notebook for trVAE, its tutorial uses
the Haber et al. infection data with the same recipe): a conditional VAE on log-normalised data
with the condition as its condition, mean squared error loss, hidden layers [128, 128],
dropout 0.2, batch norm, the MMD penalty on the latent space (TRVAE's default), the KL weight
annealed over 200 epochs, gradients clipped at 100, up to 2000 epochs of batches of 512 with
early stopping on the validation loss (patience 750) and scArches' own 90/10 train/validation
split. The control cells are encoded under the control condition and a latent sample is decoded
under the stimulated condition; the decoded cells are written as they come out, in
log1p(CP10k) space (the tutorial's input space, normalised to 10,000 counts instead of
normalize_total's median so that no rescaling is needed).
"""

from __future__ import annotations

from _cli import (
    SMOKE_EPOCHS,
    Timer,
    hide_own_folder,
    limit_threads,
    parser,
    read_dense_log_normalized,
    seed_everything,
    write_prediction,
)

hide_own_folder()  # so that `import scarches` finds the installed package

# scArches' trVAE perturbation tutorial: model and training settings
MODEL_PARAMS = {
    "hidden_layer_sizes": [128, 128],
    "recon_loss": "mse",
    "dr_rate": 0.2,
    "use_bn": True,
}
TRAIN_PARAMS = {"alpha_epoch_anneal": 200, "clip_value": 100}
MAX_EPOCHS, BATCH_SIZE, PATIENCE = 2000, 512, 750
# cells per forward pass of the prediction
PREDICT_BATCH = 512


def predict(model, x, ctrl: str, stim: str, batch_size: int):
    """Encode ``x`` under ``ctrl``, decode a latent sample under ``stim`` (the tutorial's way)."""
    import numpy as np
    import torch

    net = model.model
    net.eval()
    codes = net.condition_encoder
    out = []
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            batch = torch.tensor(x[start : start + batch_size])
            source = torch.full((batch.shape[0],), codes[ctrl], dtype=torch.long)
            target = torch.full((batch.shape[0],), codes[stim], dtype=torch.long)
            mean, log_var = net.encoder(batch, source)  # mse loss: the input as it is
            latent = net.sampling(mean, log_var)
            out.append(net.decoder(latent, target)[0].numpy())
    return np.concatenate(out)


def main() -> None:
    p = parser(__doc__.splitlines()[0], MAX_EPOCHS, BATCH_SIZE)
    p.add_argument(
        "--early-stopping-patience",
        type=int,
        default=PATIENCE,
        help="stop after this many epochs without a better validation loss",
    )
    args = p.parse_args()
    limit_threads(args.threads)
    seed_everything(args.seed)
    import scarches as sca
    import torch

    torch.set_num_threads(args.threads)
    train, control = read_dense_log_normalized(args)
    train.obs[args.condition_key] = train.obs[args.condition_key].astype(str)
    conditions = sorted(set(train.obs[args.condition_key]))
    model = sca.models.TRVAE(
        adata=train, condition_key=args.condition_key, conditions=conditions, **MODEL_PARAMS
    )
    with Timer() as timer:
        model.train(
            n_epochs=SMOKE_EPOCHS if args.smoke else args.max_epochs,
            batch_size=args.batch_size,
            early_stopping_kwargs={
                "early_stopping_metric": "val_unweighted_loss",
                "threshold": 0,
                "patience": args.early_stopping_patience,
                "reduce_lr": False,
            },
            seed=args.seed,
            monitor=False,
            **TRAIN_PARAMS,
        )
    trainer = model.trainer
    print(
        f"trained {trainer.epoch + 1} epochs; best validation loss in epoch {trainer.best_epoch}"
    )
    expression = predict(model, control.X, args.ctrl, args.stim, PREDICT_BATCH)
    write_prediction(args.out, control, expression, timer, ("scArches", "torch", "anndata"))


if __name__ == "__main__":
    main()
