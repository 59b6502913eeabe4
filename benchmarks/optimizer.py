"""Fused against plain Adam, on the installed scvi-tools: the test protocol of the Kang floors.

scvi-tools 1.5's training plan defaults to a fused Adam; 1.4 has only the plain one (here built
through ``optimizer_creator``). For CD14 Mono, CD4 Naive T and B: hold out the type's
stimulated cells, train a CGMVAE for 100 epochs (the tests' setting), predict from the control
cells (1 draw per cell, and 10 averaged), score top-100-DEG R² and LFC R². Each run appends a
JSON line to ``--output``; ``--table`` reads the lines of every stack and writes the section.

    python benchmarks/optimizer.py --output optimizer.jsonl        # in each stack's venv
    python benchmarks/optimizer.py --table optimizer.jsonl         # -> docs/benchmarks/speed.md
"""

from __future__ import annotations

import argparse
import inspect
import json
import time

import pandas as pd
import scvi
import torch
from _common import kang, mean_sd, setup_threads, write_section
from scvi.train import TrainingPlan

import scgmvae

CELL_TYPES = ("CD14 Mono", "CD4 Naive T", "B")
EPOCHS = 100
# scvi-tools' TrainingPlan defaults, which a custom optimizer must repeat
LR, EPS, WEIGHT_DECAY = 1e-2, 0.01, 1e-6


def _plan_kwargs(fused: bool) -> dict:
    if "fused_optimizer" in inspect.signature(TrainingPlan.__init__).parameters:
        return {"fused_optimizer": fused}
    return {
        "optimizer": "Custom",
        "optimizer_creator": lambda params: torch.optim.Adam(
            params, lr=LR, eps=EPS, weight_decay=WEIGHT_DECAY, fused=fused
        ),
    }


def run(output: str, seeds: int) -> None:
    adata = kang()
    for seed in range(seeds):
        for cell_type in CELL_TYPES:
            for fused in (False, True):
                of_type = adata.obs["cell_type"] == cell_type
                stimulated = adata.obs["condition"] == "stimulated"
                train = adata[~(of_type & stimulated)].copy()
                control, real = adata[of_type & ~stimulated].copy(), adata[of_type & stimulated]
                scvi.settings.seed = seed
                scgmvae.model.CGMVAE.setup_anndata(
                    train, condition_key="condition", labels_key="cell_type"
                )
                model = scgmvae.model.CGMVAE(train)
                start = time.perf_counter()
                model.train(
                    max_epochs=EPOCHS, enable_progress_bar=False, plan_kwargs=_plan_kwargs(fused)
                )
                seconds = time.perf_counter() - start
                row = {"stack": f"scvi {scvi.__version__}", "seed": seed, "cell_type": cell_type}
                row.update(fused=fused, secs=seconds)
                for n_samples, suffix in ((1, ""), (10, "10")):
                    predicted = model.predict_perturbation(
                        control, target_condition="stimulated", n_samples=n_samples
                    )
                    scores = scgmvae.tl.evaluate_perturbation(predicted, real, control)
                    row[f"top{suffix}"] = scores.loc["prediction", "r2_top_degs"]
                    row[f"lfc{suffix}"] = scores.loc["prediction", "r2_lfc_top_degs"]
                print(row, flush=True)
                with open(output, "a") as file:
                    file.write(json.dumps(row) + "\n")


def table(path: str) -> None:
    frame = pd.read_json(path, lines=True)
    frame["optimizer"] = frame["fused"].map({True: "fused Adam", False: "plain Adam"})
    metrics = {"top": "top-DEG R², 1 draw", "lfc": "LFC R², 1 draw"}
    metrics |= {"top10": "top-DEG R², 10 draws", "lfc10": "LFC R², 10 draws"}
    result = frame.groupby(["stack", "cell_type", "optimizer"])[list(metrics)].agg(mean_sd)
    write_section(
        "optimizer",
        "Fused or plain Adam, scvi-tools 1.4 and 1.5 (Kang, test protocol)",
        "python benchmarks/optimizer.py --output optimizer.jsonl  # in each stack's venv\n"
        "python benchmarks/optimizer.py --table optimizer.jsonl",
        result.rename(columns=metrics),
        "Stacks: Python 3.11 with scvi-tools 1.4.2, scanpy 1.11, anndata 0.12 (torch 2.13 CPU); "
        "Python 3.12 with scvi-tools 1.5.1, scanpy 1.12, anndata 0.13 (torch 2.14). 100 epochs, "
        "2,000 HVGs, the held-out type's stimulated cells predicted from its control cells. "
        "Mean ± sd over seeds, then each seed. The differences between the optimizers are "
        "within the spread over seeds on both stacks, and so are those between the stacks; "
        "scgmvae trains with the plain Adam on both (1.4's behaviour), so that results do not "
        "depend on the installed version.",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", help="append the runs of this stack to this JSON-lines file")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--table", help="write the section from this JSON-lines file")
    args = parser.parse_args()
    setup_threads()
    if args.output:
        run(args.output, args.seeds)
    if args.table:
        table(args.table)


if __name__ == "__main__":
    main()
