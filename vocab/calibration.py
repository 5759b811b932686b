"""Calibration: fitting the sigmoid's centre and scale to a collection's CLIP logits.

CLIP logits are domain-specific (on space photos they sit around 16-32), so a fixed centre
and scale rarely fit a new collection. Two ways to fit them, both ending in the same
logistic fit score = sigmoid((logit - centre) / scale):

- with a few human labels (image, attribute, 0/1): a logistic regression of the labels on
  the logit, by Newton's method (a two-parameter maximum likelihood fit);
- without labels: a two-component Gaussian mixture on the logits (EM), whose posterior
  P(high component | logit) is what a good sigmoid should reproduce; the same logistic fit
  is then made to those soft labels. For two equal-variance Gaussians this posterior is
  exactly a sigmoid, centred between the means (shifted by the mixing weights), with
  scale = variance / distance between the means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from columnist.vocab.scoring import sigmoid

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class LogisticFit:
    centre: float
    scale: float


@dataclass(frozen=True)
class Mixture:
    weights: tuple[float, float]
    means: tuple[float, float]
    stds: tuple[float, float]

    def posterior_high(self, x: "np.ndarray") -> "np.ndarray":
        import numpy as np

        densities = [w / s * np.exp(-0.5 * ((x - m) / s) ** 2) for w, m, s in zip(self.weights, self.means, self.stds)]
        return densities[1] / np.maximum(densities[0] + densities[1], 1e-300)


def fit_logistic(x: "np.ndarray", y: "np.ndarray", iterations: int = 100) -> LogisticFit:
    """Maximum-likelihood sigmoid((x - centre) / scale) for targets y in [0, 1] (soft allowed)."""
    import numpy as np

    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    mean, spread = x.mean(), x.std() or 1.0
    z = (x - mean) / spread  # fit on standardised logits: well conditioned
    a, b = 1.0, 0.0  # p = sigmoid(a * z + b)
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-(a * z + b)))
        weight = np.maximum(p * (1 - p), 1e-9)
        gradient = np.array([((p - y) * z).sum(), (p - y).sum()])
        hessian = np.array([[(weight * z * z).sum(), (weight * z).sum()],
                            [(weight * z).sum(), weight.sum()]]) + 1e-6 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-10:
            break
    if a <= 0:
        raise ValueError("the labels do not rise with the logit: no increasing sigmoid fits them")
    scale = spread / a
    return LogisticFit(centre=float(mean - b * scale), scale=float(scale))


def fit_mixture(x: "np.ndarray", iterations: int = 300) -> Mixture:
    """Two-component 1-D Gaussian mixture by EM, components ordered low then high."""
    import numpy as np

    x = np.asarray(x, np.float64)
    means = np.quantile(x, [0.25, 0.75])
    stds = np.full(2, x.std() / 2 or 1.0)
    weights = np.array([0.5, 0.5])
    for _ in range(iterations):
        density = weights / stds * np.exp(-0.5 * ((x[:, None] - means) / stds) ** 2)
        responsibility = density / np.maximum(density.sum(axis=1, keepdims=True), 1e-300)
        totals = responsibility.sum(axis=0) + 1e-12
        new_means = (responsibility * x[:, None]).sum(axis=0) / totals
        stds = np.sqrt((responsibility * (x[:, None] - new_means) ** 2).sum(axis=0) / totals) + 1e-6
        weights = totals / len(x)
        converged = np.abs(new_means - means).max() < 1e-9
        means = new_means
        if converged:
            break
    order = np.argsort(means)
    return Mixture(tuple(weights[order]), tuple(means[order]), tuple(stds[order]))


def suggest_unlabelled(logits: "np.ndarray") -> tuple[LogisticFit, Mixture]:
    """Centre and scale from the logit distribution alone (see the module docstring)."""
    mixture = fit_mixture(logits)
    return fit_logistic(logits, mixture.posterior_high(logits)), mixture


def log_loss(labels: "np.ndarray", scores: "np.ndarray") -> float:
    import numpy as np

    p = np.clip(np.asarray(scores, np.float64), 1e-7, 1 - 1e-7)
    y = np.asarray(labels, np.float64)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def fit_labelled(logits: "np.ndarray", labels: "np.ndarray", centre: float, scale: float) -> tuple[LogisticFit, float, float]:
    """The fit to human labels, with the log-loss before (current centre/scale) and after."""
    fit = fit_logistic(logits, labels)
    before = log_loss(labels, sigmoid(logits, centre, scale))
    after = log_loss(labels, sigmoid(logits, fit.centre, fit.scale))
    return fit, before, after
