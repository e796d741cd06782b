"""MedTrim's triplet loss and the InfoNCE baseline against direct computations on hand-made embeddings."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from medray.errors import ConfigError
from medray.medtrim.loss import LossConfig, compute_loss, cosine_distance, info_nce, triplet_loss

ALPHA = 0.3

# Row 0: unit 3-d vectors whose cosines are stated beside them.
#   cos(Ia, Ip) = 0.6   cos(Ia, In) = 0      -> ii = max(0, 0.4 - 1.0 + 0.3) = 0  (the hinge at zero)
#   cos(Ta, Tp) = 0.8   cos(Ta, Tn) = 0.6    -> tt = max(0, 0.2 - 0.4 + 0.3) = 0.1
#   cos(Ia, Tp) = 0     cos(Ia, Tn) = 0.8    -> it = max(0, 1.0 - 0.2 + 0.3) = 1.1
#   cos(Ta, Ip) = 0     cos(Ta, In) = 0      -> ti = max(0, 1.0 - 1.0 + 0.3) = 0.3
ROW0 = {
    "img_a": (1.0, 0.0, 0.0), "img_p": (0.6, 0.8, 0.0), "img_n": (0.0, 1.0, 0.0),
    "txt_a": (0.0, 0.0, 1.0), "txt_p": (0.0, 0.6, 0.8), "txt_n": (0.8, 0.0, 0.6),
}
ROW0_HINGES = {"ii": 0.0, "tt": 0.1, "it": 1.1, "ti": 0.3}
# Row 1: not unit length (the loss reads only directions).
ROW1 = {
    "img_a": (2.0, 1.0, 0.0), "img_p": (0.0, 3.0, 1.0), "img_n": (1.0, 1.0, 1.0),
    "txt_a": (0.5, -1.0, 2.0), "txt_p": (1.0, 0.0, -1.0), "txt_n": (0.0, 0.0, 4.0),
}
NAMES = ("img_a", "txt_a", "img_p", "txt_p", "img_n", "txt_n")


def batch(*rows: dict) -> dict[str, torch.Tensor]:
    return {name: torch.tensor([row[name] for row in rows], dtype=torch.float64) for name in NAMES}


def plain_distance(x, y) -> float:
    dot = sum(a * b for a, b in zip(x, y))
    return 1.0 - dot / (math.sqrt(sum(a * a for a in x)) * math.sqrt(sum(b * b for b in y)))


def plain_loss(rows: list[dict], alpha: float, eta: float) -> float:
    """The loss written out with Python loops and floats only."""
    pairings = {"ii": ("img_a", "img_p", "img_n"), "tt": ("txt_a", "txt_p", "txt_n"),
                "it": ("img_a", "txt_p", "txt_n"), "ti": ("txt_a", "img_p", "img_n")}
    means = {}
    for name, (a, p, n) in pairings.items():
        hinges = [max(0.0, plain_distance(r[a], r[p]) - plain_distance(r[a], r[n]) + alpha) for r in rows]
        means[name] = sum(hinges) / len(hinges)
    return (1 - eta) * (means["ii"] + means["tt"]) + eta * (means["it"] + means["ti"])


def test_hand_computed_row_gives_the_stated_hinges():
    loss, parts = triplet_loss(**batch(ROW0), alpha=ALPHA, eta=0.25)
    for name, value in ROW0_HINGES.items():
        assert parts[name].item() == pytest.approx(value, abs=1e-12), name
    # (1 - 0.25) * (0 + 0.1) + 0.25 * (1.1 + 0.3)
    assert loss.item() == pytest.approx(0.425, abs=1e-12)
    assert parts["image"].item() + parts["text"].item() == pytest.approx(loss.item())
    assert parts["active"].item() == pytest.approx(0.75)  # ii sits at the hinge


@pytest.mark.parametrize("eta", [0.0, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.2])
def test_loss_equals_a_direct_computation(alpha, eta):
    loss, _ = triplet_loss(**batch(ROW0, ROW1), alpha=alpha, eta=eta)
    assert loss.item() == pytest.approx(plain_loss([ROW0, ROW1], alpha, eta), abs=1e-12)


def test_eta_one_half_is_the_reference_sum_of_image_and_text_losses():
    """icon-lab/MedTrim trains on (ii + it)/2 + (tt + ti)/2."""
    loss, parts = triplet_loss(**batch(ROW0, ROW1), alpha=ALPHA, eta=0.5)
    reference = (parts["ii"] + parts["it"]) / 2 + (parts["tt"] + parts["ti"]) / 2
    assert loss.item() == pytest.approx(reference.item(), abs=1e-12)
    assert parts["image"].item() == pytest.approx(((parts["ii"] + parts["it"]) / 2).item())


def free_embeddings(seed: int = 0, n: int = 4, dim: int = 8) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {name: torch.randn(n, dim, generator=g, dtype=torch.float64).requires_grad_() for name in NAMES}


PAIRINGS = {"ii": ("img_a", "img_p", "img_n", 0.0), "tt": ("txt_a", "txt_p", "txt_n", 0.0),
            "it": ("img_a", "txt_p", "txt_n", 1.0), "ti": ("txt_a", "img_p", "img_n", 1.0)}


@pytest.mark.parametrize("pairing", list(PAIRINGS))
def test_one_sgd_step_pulls_positives_in_and_pushes_negatives_out(pairing):
    """eta 0 keeps the within-modal pairings only, eta 1 the cross-modal ones; each touches its own tensors."""
    a, p, n, eta = PAIRINGS[pairing]
    emb = free_embeddings()
    before_ap = cosine_distance(emb[a], emb[p]).detach()
    before_an = cosine_distance(emb[a], emb[n]).detach()
    loss, parts = triplet_loss(**emb, alpha=1.0, eta=eta)  # a wide margin: every hinge is active
    assert parts["active"].item() == 1.0
    loss.backward()
    with torch.no_grad():
        for t in emb.values():
            t -= 0.05 * t.grad
    after_ap, after_an = cosine_distance(emb[a], emb[p]), cosine_distance(emb[a], emb[n])
    assert torch.all(after_ap < before_ap), (before_ap, after_ap)
    assert torch.all(after_an > before_an), (before_an, after_an)


def test_a_step_on_the_full_loss_lowers_it():
    emb = free_embeddings(seed=3)
    loss, _ = triplet_loss(**emb, alpha=ALPHA, eta=0.5)
    loss.backward()
    with torch.no_grad():
        stepped = {name: t - 0.05 * t.grad for name, t in emb.items()}
    assert triplet_loss(**stepped, alpha=ALPHA, eta=0.5)[0].item() < loss.item()


def test_satisfied_triplets_give_zero_loss_and_no_gradient():
    emb = {name: torch.tensor([[1.0, 0.0]], requires_grad=True) for name in ("img_a", "txt_a", "img_p", "txt_p")}
    emb |= {name: torch.tensor([[-1.0, 0.0]], requires_grad=True) for name in ("img_n", "txt_n")}
    loss, parts = triplet_loss(**emb, alpha=ALPHA)  # d(a, p) = 0, d(a, n) = 2: every hinge at 0
    loss.backward()
    assert loss.item() == 0.0 and parts["active"].item() == 0.0
    assert all(torch.count_nonzero(t.grad) == 0 for t in emb.values())


# ---- InfoNCE ------------------------------------------------------------------------------------

IMG = torch.eye(3, dtype=torch.float64)
# Unit rows; their cosines with the image axes are the entries themselves.
TXT = torch.tensor([[0.8, 0.6, 0.0], [0.0, 1.0, 0.0], [0.6, 0.0, 0.8]], dtype=torch.float64)


def plain_info_nce(sim: list[list[float]], temperature: float) -> float:
    n = len(sim)
    image_to_text = [-math.log(math.exp(sim[i][i] / temperature)
                               / sum(math.exp(sim[i][j] / temperature) for j in range(n))) for i in range(n)]
    text_to_image = [-math.log(math.exp(sim[j][j] / temperature)
                               / sum(math.exp(sim[i][j] / temperature) for i in range(n))) for j in range(n)]
    return 0.5 * (sum(image_to_text) / n + sum(text_to_image) / n)


@pytest.mark.parametrize("temperature", [0.07, 0.5, 1.0])
def test_info_nce_equals_cross_entropy_by_hand(temperature):
    sim = [[0.8, 0.0, 0.6], [0.6, 1.0, 0.0], [0.0, 0.0, 0.8]]  # sim[i][j] = cos(image i, text j)
    assert torch.allclose((IMG @ TXT.T), torch.tensor(sim, dtype=torch.float64))
    assert info_nce(IMG, TXT, temperature).item() == pytest.approx(plain_info_nce(sim, temperature), abs=1e-10)
    assert info_nce(3 * IMG, 0.5 * TXT, temperature).item() == pytest.approx(plain_info_nce(sim, temperature), abs=1e-10)


def test_info_nce_is_lowest_when_matched_pairs_are_most_similar():
    losses = {perm: info_nce(IMG, IMG[list(perm)], 0.1).item() for perm in itertools.permutations(range(3))}
    assert min(losses, key=losses.get) == (0, 1, 2)
    assert losses[(0, 1, 2)] < 1e-3 < min(v for k, v in losses.items() if k != (0, 1, 2))


# ---- config and dispatch -----------------------------------------------------------------------


@pytest.mark.parametrize("field, value", [("kind", "clip"), ("alpha", -0.1), ("alpha", 2.5), ("eta", 1.5),
                                          ("temperature", 0.0)])
def test_config_errors_name_the_key(field, value):
    cfg = LossConfig(**{field: value})
    with pytest.raises(ConfigError, match=f"'train.loss.{field}'"):
        cfg.check("train.loss")


def test_compute_loss_follows_the_config():
    rows = batch(ROW0, ROW1)
    loss, parts = compute_loss(LossConfig(kind="medtrim", alpha=ALPHA, eta=0.25), **rows)
    assert loss.item() == pytest.approx(plain_loss([ROW0, ROW1], ALPHA, 0.25), abs=1e-12) and "ii" in parts
    loss, parts = compute_loss(LossConfig(kind="infonce", temperature=0.5), rows["img_a"], rows["txt_a"])
    assert loss.item() == pytest.approx(info_nce(rows["img_a"], rows["txt_a"], 0.5).item()) and set(parts) == {"infonce"}
    assert LossConfig().needs_triplets and not LossConfig(kind="infonce").needs_triplets
    with pytest.raises(ValueError, match="positives and negatives"):
        compute_loss(LossConfig(), rows["img_a"], rows["txt_a"])
