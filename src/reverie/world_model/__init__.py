"""World model (section 2.1): RSSM with discrete latents, KL balancing, image/reward/discount heads."""

from reverie.world_model.kl import kl_loss
from reverie.world_model.model import WorldModel
from reverie.world_model.rssm import RSSM, latent_dist

__all__ = ["RSSM", "WorldModel", "kl_loss", "latent_dist"]
