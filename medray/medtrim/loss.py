"""Alignment losses: MedTrim's multimodal triplet loss and a CLIP-style InfoNCE baseline.

The triplet loss works on cosine distance d(x, y) = 1 - cos(x, y) with the
hinge h(a, p, n) = max(0, d(a, p) - d(a, n) + alpha), averaged over the batch.
A triplet (anchor, positive, negative) has an image and a report each, which
gives four hinges:

    ii  image anchor, image positive/negative   (within-modal)
    tt  text anchor,  text positive/negative    (within-modal)
    it  image anchor, text positive/negative    (cross-modal)
    ti  text anchor,  image positive/negative   (cross-modal)

and the loss

    L = (1 - eta) * (ii + tt) + eta * (it + ti)
      = image part [(1 - eta) ii + eta it] + text part [(1 - eta) tt + eta ti].

Why this form: the released MedTrim code (icon-lab/MedTrim, loss.py) has no
eta; it returns (ii + it) / 2 for the image encoder and (tt + ti) / 2 for the
text encoder and trains on their sum. eta = 0.5 reproduces that sum exactly,
eta = 0 keeps only the within-modal terms and eta = 1 only the cross-modal
ones, so a sweep over eta moves between the paper's two kinds of alignment
while its default stays the reference's. The "image" and "text" parts are
the reference's two reported losses, for comparable logs.

InfoNCE is the symmetric CLIP loss on cosine similarities over a batch of
matched pairs, with a fixed temperature (a learnable one would make the
baseline differ from MedTrim in two ways at once).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from medray.errors import ConfigError

LOSS_KINDS = ("medtrim", "infonce")


@dataclass
class LossConfig:
    kind: str = "medtrim"  # medtrim (triplets) | infonce (matched pairs, the baseline)
    alpha: float = 0.3  # triplet margin on d = 1 - cos (which lies in [0, 2])
    eta: float = 0.5  # weight of the cross-modal terms; 1 - eta weighs the within-modal ones
    temperature: float = 0.07  # InfoNCE only

    def check(self, prefix: str = "loss") -> None:
        if self.kind not in LOSS_KINDS:
            raise ConfigError(f"{prefix}.kind", f"{self.kind!r}: expected one of {', '.join(LOSS_KINDS)}")
        if not 0.0 <= self.alpha <= 2.0:
            raise ConfigError(f"{prefix}.alpha", f"must be in [0, 2] (cosine distances lie there), got {self.alpha}")
        if not 0.0 <= self.eta <= 1.0:
            raise ConfigError(f"{prefix}.eta", f"must be in [0, 1], got {self.eta}")
        if not self.temperature > 0.0:
            raise ConfigError(f"{prefix}.temperature", f"must be positive, got {self.temperature}")

    @property
    def needs_triplets(self) -> bool:
        return self.kind == "medtrim"


def cosine_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Row-wise 1 - cos(x_i, y_i): 0 for the same direction, 2 for opposite ones."""
    return 1.0 - F.cosine_similarity(x, y, dim=-1)


def triplet_hinge(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, alpha: float) -> torch.Tensor:
    """Per-row max(0, d(a, p) - d(a, n) + alpha)."""
    return torch.clamp(cosine_distance(anchor, positive) - cosine_distance(anchor, negative) + alpha, min=0.0)


def triplet_loss(img_a: torch.Tensor, txt_a: torch.Tensor, img_p: torch.Tensor, txt_p: torch.Tensor,
                 img_n: torch.Tensor, txt_n: torch.Tensor, alpha: float = 0.3, eta: float = 0.5
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """MedTrim's loss over a batch of (B, D) embeddings; returns (loss, parts).

    `parts` holds detached batch means of the four hinges (ii, tt, it, ti), the
    image and text parts (they sum to the loss) and `active`, the share of
    hinges above zero (triplets that still teach something).
    """
    hinges = {
        "ii": triplet_hinge(img_a, img_p, img_n, alpha),
        "tt": triplet_hinge(txt_a, txt_p, txt_n, alpha),
        "it": triplet_hinge(img_a, txt_p, txt_n, alpha),
        "ti": triplet_hinge(txt_a, img_p, img_n, alpha),
    }
    means = {name: h.mean() for name, h in hinges.items()}
    image = (1.0 - eta) * means["ii"] + eta * means["it"]
    text = (1.0 - eta) * means["tt"] + eta * means["ti"]
    loss = image + text
    active = torch.stack([(h > 0).float().mean() for h in hinges.values()]).mean()
    parts = {name: m.detach() for name, m in means.items()}
    parts.update(image=image.detach(), text=text.detach(), active=active)
    return loss, parts


def info_nce(img: torch.Tensor, txt: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """Symmetric InfoNCE over B matched pairs: row i of `img` belongs with row i of `txt`.

    Logits are cosine similarities over `temperature`; the loss is the mean of
    the image-to-text and text-to-image cross-entropies against the diagonal.
    """
    logits = F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T / temperature
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def compute_loss(cfg: LossConfig, img_a: torch.Tensor, txt_a: torch.Tensor, img_p: torch.Tensor | None = None,
                 txt_p: torch.Tensor | None = None, img_n: torch.Tensor | None = None,
                 txt_n: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss `cfg` selects: triplets for "medtrim"; the anchors' own image-report pairs for "infonce"."""
    if cfg.kind == "infonce":
        loss = info_nce(img_a, txt_a, cfg.temperature)
        return loss, {"infonce": loss.detach()}
    if img_p is None or txt_p is None or img_n is None or txt_n is None:
        raise ValueError("the medtrim loss needs positives and negatives for both modalities")
    return triplet_loss(img_a, txt_a, img_p, txt_p, img_n, txt_n, alpha=cfg.alpha, eta=cfg.eta)
