"""Behavior learning in imagination (section 2.2): λ-returns, actor, critic, slow critic.

Everything here is time-major ``[T, N, ...]`` (N = B·L imagined start states).
"""

from reverie.behavior.actor_critic import Actor, ActorCritic, Critic, imagine
from reverie.behavior.returns import lambda_return

__all__ = ["Actor", "ActorCritic", "Critic", "imagine", "lambda_return"]
