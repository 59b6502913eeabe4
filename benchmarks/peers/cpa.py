"""CPA (cpa-tools) as a peer of the perturbation benchmark.

Run with a Python < 3.11 that has ``cpa-tools`` (see benchmarks/_peers.py for the set-up):

    $SCGMVAE_CPA_PYTHON benchmarks/peers/cpa.py --train train.h5ad --control control.h5ad \
        --out predicted.h5ad --seed 0

Follows CPA's Kang (IFN-beta) tutorial: negative binomial loss on counts, the cell type as a
categorical covariate, a dummy dose of 1.0, the tutorial's model and training hyper-parameters,
the top DEGs of each cell type's stimulated vs control training cells for the validation metric,
and early stopping on CPA's validation metric. The training cells are split at random into train
and validation; copies of the control cells, relabelled as stimulated, are the test ("ood") split
that is never trained on. Their prediction (CPA's counterfactual: the control cell's basal state
plus the stimulated embedding) is the negative binomial mean, written as log1p(CP10k).
"""

from __future__ import annotations

import tempfile

from _cli import (
    SMOKE_EPOCHS,
    TARGET_SUM,
    Timer,
    dense,
    hide_own_folder,
    limit_threads,
    log_normalize,
    parser,
    read_inputs,
    seed_everything,
    write_prediction,
)

hide_own_folder()  # so that `import cpa` / `import scvi` find the installed packages

# CPA's Kang tutorial (docs/tutorials/Kang.ipynb of cpa-tools), except the seed, which is --seed
MODEL_PARAMS = {
    "n_latent": 64,
    "recon_loss": "nb",
    "doser_type": "linear",
    "n_hidden_encoder": 128,
    "n_layers_encoder": 2,
    "n_hidden_decoder": 512,
    "n_layers_decoder": 2,
    "use_batch_norm_encoder": True,
    "use_layer_norm_encoder": False,
    "use_batch_norm_decoder": False,
    "use_layer_norm_decoder": True,
    "dropout_rate_encoder": 0.0,
    "dropout_rate_decoder": 0.1,
    "variational": False,
}
TRAINER_PARAMS = {
    "n_epochs_kl_warmup": None,
    "n_epochs_pretrain_ae": 30,
    "n_epochs_adv_warmup": 50,
    "n_epochs_mixup_warmup": 0,
    "mixup_alpha": 0.0,
    "adv_steps": None,
    "n_hidden_adv": 64,
    "n_layers_adv": 3,
    "use_batch_norm_adv": True,
    "use_layer_norm_adv": False,
    "dropout_rate_adv": 0.3,
    "reg_adv": 20.0,
    "pen_adv": 5.0,
    "lr": 0.0003,
    "wd": 4e-07,
    "adv_lr": 0.0003,
    "adv_wd": 4e-07,
    "adv_loss": "cce",
    "doser_lr": 0.0003,
    "doser_wd": 4e-07,
    "do_clip_grad": True,
    "gradient_clip_value": 1.0,
    "step_size_lr": 10,
}
# the tutorial's training call: up to 2000 epochs of batches of 512, validation every 5 epochs,
# stop after 5 validations without a better CPA metric
MAX_EPOCHS, BATCH_SIZE, CHECK_VAL_EVERY, PATIENCE = 2000, 512, 5, 5
# share of the training cells held out for validation (CPA's own default split)
VALID_FRACTION = 0.1
# DEGs per cell type for CPA's validation R², as the tutorial's rank_genes_groups_cov
N_DEGS = 50
SPLIT, DOSE, COV_COND, DEG_KEY = "_split", "_dose", "_cov_cond", "_rank_genes_groups_cov"


def degs_per_cell_type(train, condition_key: str, label_key: str, ctrl: str, stim: str) -> dict:
    """Top DEGs of stimulated vs control cells of each cell type that has both in training."""
    import scanpy as sc

    normalised = log_normalize(train)
    degs = {}
    for cell_type in sorted(train.obs[label_key].astype(str).unique()):
        cells = normalised[normalised.obs[label_key].astype(str) == cell_type].copy()
        conditions = set(cells.obs[condition_key].astype(str))
        if not {ctrl, stim} <= conditions:
            continue
        cells.obs["_group"] = cells.obs[condition_key].astype(str).astype("category")
        sc.tl.rank_genes_groups(
            cells, "_group", groups=[stim], reference=ctrl, method="wilcoxon", key_added="_d"
        )
        degs[f"{cell_type}_{stim}"] = [str(g) for g in cells.uns["_d"]["names"][stim][:N_DEGS]]
    return degs


def build(train, control, args, rng):
    """Training cells (split train/valid) plus the control cells relabelled as stimulated."""
    import anndata
    import numpy as np

    query = control.copy()
    query.obs[args.condition_key] = args.stim
    query.obs_names = [f"query-{name}" for name in control.obs_names]
    split = np.where(rng.random(train.n_obs) < VALID_FRACTION, "valid", "train")
    keys = [args.condition_key, args.label_key]
    parts = {}
    for name, adata, labels in (("train", train, split), ("query", query, "ood")):
        part = anndata.AnnData(X=adata.X.copy(), obs=adata.obs[keys].astype(str).copy())
        part.var_names = adata.var_names
        part.obs[SPLIT] = labels
        parts[name] = part
    adata = anndata.concat(parts, merge="same")
    adata.obs[DOSE] = "1.0"
    adata.obs[COV_COND] = adata.obs[args.label_key] + "_" + adata.obs[args.condition_key]
    for key in (*keys, SPLIT, COV_COND):
        adata.obs[key] = adata.obs[key].astype("category")
    adata.uns[DEG_KEY] = degs_per_cell_type(
        train, args.condition_key, args.label_key, args.ctrl, args.stim
    )
    return adata


def main() -> None:
    p = parser(__doc__.splitlines()[0], MAX_EPOCHS, BATCH_SIZE)
    p.add_argument("--check-val-every", type=int, default=CHECK_VAL_EVERY)
    p.add_argument("--early-stopping-patience", type=int, default=PATIENCE)
    args = p.parse_args()
    limit_threads(args.threads)
    seed_everything(args.seed)
    import cpa
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    train, control = read_inputs(args)
    adata = build(train, control, args, np.random.default_rng(args.seed))
    cpa.CPA.setup_anndata(
        adata,
        perturbation_key=args.condition_key,
        control_group=args.ctrl,
        dosage_key=DOSE,
        categorical_covariate_keys=[args.label_key],
        is_count_data=True,
        deg_uns_key=DEG_KEY,
        deg_uns_cat_key=COV_COND,
        max_comb_len=1,
    )
    model = cpa.CPA(
        adata,
        split_key=SPLIT,
        train_split="train",
        valid_split="valid",
        test_split="ood",
        seed=args.seed,
        **MODEL_PARAMS,
    )
    plan = dict(TRAINER_PARAMS)
    max_epochs, check_val = args.max_epochs, args.check_val_every
    if args.smoke:
        max_epochs, check_val = SMOKE_EPOCHS, 1
        plan.update(n_epochs_pretrain_ae=1, n_epochs_adv_warmup=1)
    with tempfile.TemporaryDirectory() as save_path, Timer() as timer:
        model.train(
            max_epochs=max_epochs,
            use_gpu=False,
            batch_size=args.batch_size,
            plan_kwargs=plan,
            early_stopping_patience=args.early_stopping_patience,
            check_val_every_n_epoch=check_val,
            save_path=save_path,
            enable_progress_bar=False,
        )
    query = adata[adata.obs[SPLIT] == "ood"].copy()
    model.predict(query, batch_size=args.batch_size)
    mean = dense(query.obsm["CPA_pred"])
    # the NB mean is in counts at the control cell's library size: normalise like the data
    expression = np.log1p(mean / mean.sum(1, keepdims=True) * TARGET_SUM)
    write_prediction(args.out, control, expression, timer, ("cpa-tools", "scvi-tools", "torch"))


if __name__ == "__main__":
    main()
