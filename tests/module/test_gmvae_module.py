"""The module on small random tensors: the ELBO terms, the KL helpers, covariates."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scvi import REGISTRY_KEYS
from torch.distributions import Categorical, Normal, kl_divergence

from scgmvae.module import GMVAEModule
from scgmvae.module._components import bounded, kl_to_each_component
from scgmvae.module._constants import CONDITION_KEY

COUNTS = torch.tensor(
    [[0.0, 3, 1, 0, 7, 2], [5, 0, 0, 1, 2, 9], [1, 1, 4, 0, 0, 3], [0, 8, 2, 2, 1, 0]]
)
# two labelled cells (components 0 and 1) and two unlabelled ones (code 2 = n_labels)
LABELS = torch.tensor([[0.0], [1], [2], [2]])
CONDITIONS = torch.tensor([[0.0], [1], [0], [1]])


def _batch(likelihood: str) -> dict[str, torch.Tensor]:
    x = {"normal": torch.log1p(COUNTS), "bernoulli": COUNTS / COUNTS.max()}.get(likelihood, COUNTS)
    return {REGISTRY_KEYS.X_KEY: x, REGISTRY_KEYS.LABELS_KEY: LABELS, CONDITION_KEY: CONDITIONS}


def _module(**kwargs) -> GMVAEModule:
    torch.manual_seed(0)
    defaults = {"n_input": 6, "n_components": 3, "n_labels": 2, "n_conditions": 2}
    return GMVAEModule(**{**defaults, "n_latent": 2, "n_latent_w": 2, "n_hidden": 8, **kwargs})


# Loss values of the module before the loss was split into named terms (commit 77c64ed,
# 2026-11-25): the same seed must give the same ELBO.
PINNED_LOSSES = {
    ("shift", "nb", "fixed"): 18.75918960571289,
    ("network", "nb", "fixed"): 19.678241729736328,
    ("shift", "zinb", "fixed"): 20.225383758544922,
    ("shift", "poisson", "fixed"): 22.439098358154297,
    ("shift", "normal", "learned"): 17.705490112304688,
    ("network", "bernoulli", "learned"): 10.70083999633789,
}


@pytest.mark.parametrize(("effect", "likelihood", "w_prior"), list(PINNED_LOSSES))
def test_loss_is_pinned_on_a_fixed_batch(effect, likelihood, w_prior):
    module = _module(condition_effect=effect, gene_likelihood=likelihood, w_prior=w_prior)
    torch.manual_seed(1)
    _, _, out = module(_batch(likelihood), loss_kwargs={"kl_weight": 0.5})
    assert out.loss.item() == pytest.approx(PINNED_LOSSES[(effect, likelihood, w_prior)], 1e-6)


def test_loss_is_the_mean_of_its_named_terms():
    module = _module()
    torch.manual_seed(1)
    _, _, out = module(_batch("nb"), loss_kwargs={"kl_weight": 0.5})
    kl = sum(out.kl_local.values())
    n_labelled = 2
    classification = out.classification_loss * n_labelled / len(COUNTS)  # per-cell mean
    expected = (out.reconstruction_loss["reconstruction_loss"] + 0.5 * kl).mean()
    expected = expected + module.classification_weight * classification
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert out.true_labels.tolist() == [0, 1]
    assert out.logits.shape == (n_labelled, 3)


def test_kl_to_each_component_is_the_closed_form():
    torch.manual_seed(2)
    qz = Normal(torch.randn(5, 3), torch.rand(5, 3) + 0.1)
    means, variances = torch.randn(5, 4, 3), torch.rand(5, 4, 3) + 0.1
    result = kl_to_each_component(qz, means, variances)
    q_mean, q_var = qz.loc[:, None], qz.scale.square()[:, None]
    closed_form = 0.5 * (
        torch.log(variances / q_var) + (q_var + (q_mean - means) ** 2) / variances - 1
    ).sum(-1)
    torch.testing.assert_close(result, closed_form)
    for k in range(4):
        one = kl_divergence(qz, Normal(means[:, k], variances[:, k].sqrt())).sum(-1)
        torch.testing.assert_close(result[:, k], one)


def test_unsupervised_terms_integrate_y_out():
    torch.manual_seed(3)
    kl_components = torch.rand(6, 4) * 5
    probs_y = torch.softmax(torch.randn(6, 4), -1)
    d = torch.distributions.Dirichlet(torch.ones(4)).sample((6,))
    kl_z, kl_y = GMVAEModule.unsupervised_terms(kl_components, probs_y, torch.log(d))
    torch.testing.assert_close(kl_z, (probs_y * kl_components).sum(-1))
    torch.testing.assert_close(kl_y, kl_divergence(Categorical(probs_y), Categorical(d)))


def test_supervised_terms_use_the_observed_component():
    torch.manual_seed(4)
    kl_components = torch.rand(3, 4)
    probs_y = torch.softmax(torch.randn(3, 4), -1)
    log_d = torch.log(torch.distributions.Dirichlet(torch.ones(4)).sample((3,)))
    components = torch.tensor([2, 0, 3])
    kl_z, kl_y, classification = GMVAEModule.supervised_terms(
        kl_components, probs_y, log_d, components
    )
    rows = torch.arange(3)
    torch.testing.assert_close(kl_z, kl_components[rows, components])
    torch.testing.assert_close(kl_y, -log_d[rows, components])
    torch.testing.assert_close(classification, -torch.log(probs_y[rows, components]))


def test_use_labels_false_treats_every_cell_as_unlabelled():
    module = _module()
    tensors = _batch("nb")
    torch.manual_seed(1)
    inference = module.inference(**module._get_inference_input(tensors))
    generative = module.generative(**module._get_generative_input(tensors, inference))
    ignored = module.loss(tensors, inference, generative, use_labels=False)
    unlabelled = module.loss(
        {**tensors, REGISTRY_KEYS.LABELS_KEY: torch.full_like(LABELS, 2)}, inference, generative
    )
    assert ignored.loss.item() == pytest.approx(unlabelled.loss.item())
    assert ignored.extra_metrics["classification"] == 0
    labelled = module.loss(tensors, inference, generative)
    assert labelled.extra_metrics["classification"] > 0
    # an unlabelled cell's terms do not depend on the other cells being labelled
    torch.testing.assert_close(labelled.kl_local["kl_z"][2:], ignored.kl_local["kl_z"][2:])


def test_bounded_squashes_and_keeps_small_values():
    raw = torch.tensor([-1e6, -3.0, 0.0, 1e-3, 50.0])
    out = bounded(raw, 10.0)
    assert out.abs().max() <= 10.0 and out[4] < 10.0  # saturates only in float precision
    assert out[2] == 0 and out[3].item() == pytest.approx(1e-3, rel=1e-6)


def test_batch_enters_encoder_and_decoder_but_not_the_mixture():
    module = _module(n_batch=3, n_cats_per_cov=[2], n_continuous_cov=1).eval()
    x, n = COUNTS, len(COUNTS)
    covariates = {"cat_covs": torch.zeros(n, 1), "cont_covs": torch.zeros(n, 1)}
    batches = [torch.full((n, 1), b) for b in (0, 2)]
    with torch.no_grad():
        qz = [module.encode(x, CONDITIONS, b, **covariates)[0].loc for b in batches]
        z = torch.randn(n, 2)
        decoded = [
            module.decode(z, torch.zeros(n, 1), CONDITIONS, b, **covariates)[1] for b in batches
        ]
        w = torch.randn(n, 2)
        mixture = module.mixture_components(w, CONDITIONS)[0]
        probs = module.component_probs(z, CONDITIONS)
    assert not torch.allclose(*qz) and not torch.allclose(*decoded)
    # the mixture and the classifier take no batch at all
    assert mixture.shape == (n, 3, 2) and probs.shape == (n, 3)
    with torch.no_grad():
        generated = module.decode(z, torch.zeros(n, 1), CONDITIONS)[1]  # first batch, zeros
    torch.testing.assert_close(generated, decoded[0])


N_IMPORTANCE_SAMPLES = 64


def test_marginal_ll_is_above_the_elbo():
    module = _module().eval()
    tensors = _batch("nb")
    torch.manual_seed(5)
    log_px = module.marginal_ll(tensors, n_mc_samples=N_IMPORTANCE_SAMPLES)
    elbos = []
    for _ in range(N_IMPORTANCE_SAMPLES):
        _, _, out = module(tensors, loss_kwargs={"use_labels": False})
        terms = out.reconstruction_loss["reconstruction_loss"] + sum(out.kl_local.values())
        elbos.append(-terms.detach())
    elbo = torch.stack(elbos).mean(0)
    assert log_px.shape == (len(COUNTS),) and np.all(np.isfinite(log_px.numpy()))
    # y and d are integrated out exactly and the importance samples tighten the bound
    assert torch.all(log_px > elbo)


def test_condition_shift_moves_every_component_alike():
    module = _module(condition_effect="shift", n_labels=0).eval()
    with torch.no_grad():
        module.condition_shift[1] = torch.tensor([1.5, -0.5])
        n = 7
        control, stimulated = torch.zeros(n, 1), torch.ones(n, 1)
        w = torch.randn(n, module.n_latent_w)
        move = (
            module.mixture_components(w, stimulated)[0] - module.mixture_components(w, control)[0]
        )
        z, library = torch.randn(n, module.n_latent), torch.full((n, 1), 5.0)
        expression = [module.decode(z, library, c)[1] for c in (control, stimulated)]
    # one learned vector, the same for every cell and component, and a condition-free decoder
    torch.testing.assert_close(move, torch.tensor([1.5, -0.5]).expand_as(move))
    torch.testing.assert_close(*expression)


@pytest.mark.parametrize("likelihood", ["nb", "zinb"])
def test_gene_cell_dispersion_is_decoded_per_cell(likelihood):
    module = _module(gene_likelihood=likelihood, dispersion="gene-cell")
    z, library = torch.randn(3, module.n_latent), torch.full((3, 1), 5.0)
    theta = module.decode(z, library, CONDITIONS[:3])[0].theta
    assert theta.shape == (3, module.n_input)
    # each cell its own spread, learned with the rest of the ELBO
    assert not torch.allclose(theta[0], theta[1])
    _, _, out = module(_batch(likelihood))
    out.loss.backward()
    assert module.px_log_theta_head.weight.grad.abs().sum() > 0
    # one per gene by default: the same for every cell
    gene_wise = _module(gene_likelihood=likelihood).decode(z, library, CONDITIONS[:3])[0].theta
    torch.testing.assert_close(gene_wise[0], gene_wise[1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gene_likelihood": "gauss"}, "gene_likelihood='gauss' is not supported"),
        ({"dispersion": "gene-batch"}, "dispersion='gene-batch' is not supported"),
        (
            {"dispersion": "gene-cell", "gene_likelihood": "poisson"},
            "dispersion='gene-cell' needs a negative-binomial likelihood",
        ),
        ({"w_prior": "flat"}, "w_prior='flat' is not supported"),
        ({"condition_effect": "additive"}, "condition_effect='additive' is not supported"),
        ({"n_components": 1}, "n_components=1 is smaller than the number of labels"),
        ({"dirichlet_alpha": 0}, "dirichlet_alpha must be positive"),
    ],
)
def test_bad_module_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _module(**kwargs)
