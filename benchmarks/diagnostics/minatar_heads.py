"""What a MinAtar run's world model and actor make of its own replay (issue #17): does the
reward head see the rewards, and has the actor left the uniform policy?

    .venv/bin/python -m benchmarks.diagnostics.minatar_heads runs/minatar/asterix/0 runs/minatar/breakout/0 [--steps 20000]

For each run, its newest checkpoint is loaded and the newest ``--steps`` stored steps of its
replay (its newest ``ep*.npz`` files; an episode of more than 1,024 steps is stored in several,
so the oldest file read may start inside an episode) are run through the world model's
posterior, in chunks of
``--chunk`` steps that each start from the zero state, as training sequences do (and an
episode start inside a chunk resets the state, as ``is_first`` does in training). Per run it
prints, as one Markdown row:

- the reward head's mean prediction at the steps that paid a reward and at those that did
  not (a head that has learned the rewards puts the first near 1 and the second near 0; a
  head stuck at the constant solution puts both near the reward rate);
- the actor's entropy on those posterior states against the uniform policy's ``ln |A|``, and
  how often its most likely action is each action (the eval policy plays the mode);
- per object channel, how many of its cells are set per step and how many of those the
  decoder, given the posterior state, puts below probability 0.5 (a world model that tracks
  the game misses few; the reward cannot be predicted from objects the model has lost).

With ``--prior 1,2,3,5,8`` a second table: the reward head on the prior's k-step predictions of
each step, imagined from the posterior k steps before along the replay's actions. The actor
learns from imagined states: a reward the posterior reads but the prior does not predict
never reaches it. Beside it, at the rewarded steps and elsewhere, what the decoder makes of the
posterior's and the prior's states per channel (missed, spurious and set cells): whether the
prior foresees where the player and the objects are when the reward comes, and at other steps.

With ``--code`` a third table: how sure the posterior's categorical latents are (mean entropy),
how sure the one-step prior's are, how often their most likely classes agree, and what the
decoder makes of the prior's most likely code. A code the prior can foresee is one that
imagination keeps.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

from benchmarks.diagnostics._common import (
    Table,
    imagined_from_posterior,
    load_agent,
    mean,
    newest_steps,
    prior_steps,
)
from reverie.agent import Agent
from reverie.envs.minatar import channel_names

HEADER = ("| run | checkpoint | episode starts | steps | rewarded steps | reward head where rewarded | "
          "reward head elsewhere | actor entropy (uniform) | mode action shares | "
          "objects missed / set per step, by channel |")


def head_stats(agent: Agent, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The reward head's mean prediction where the replay paid a reward and elsewhere, the
    actor's entropy and its mode actions, on the posterior states of ``batch``."""
    with torch.no_grad():
        feat = agent.world_model.observe(batch).feat
        predicted = agent.world_model.heads["reward"](feat).mean.squeeze(-1).cpu().numpy().ravel()
        policy = agent.behavior.actor(feat)
        entropy = policy.entropy().cpu().numpy().ravel()
        modes = policy.probs.argmax(-1).cpu().numpy().ravel()
        decoded = agent.world_model.heads["decoder"](feat)["vector"].mean.cpu().numpy()
    paid = batch["reward"].ravel() != 0
    cells = batch["vector"].reshape(-1, 100, batch["vector"].shape[-1] // 100) > 0.5  # [N, 10·10, C], row-major
    missed = cells & (decoded.reshape(cells.shape) < 0.5)
    return {"rewarded": predicted[paid], "elsewhere": predicted[~paid], "entropy": entropy, "modes": modes,
            "set": cells.sum(1).mean(0), "missed": missed.sum(1).mean(0)}


def cell_errors(decoded: np.ndarray, vector: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Per channel, per step among ``where``: ``[set, missed, spurious]`` cells, where ``decoded``
    and ``vector`` are ``[N, 10·10·C]`` (the decoder's probabilities and the observed 0/1 grid):
    missed cells are set but decoded below 0.5, spurious ones decoded at 0.5 or more but not set.
    Shape ``[3, C]``; NaN without any step."""
    cells = vector.reshape(len(vector), 100, -1)[where] > 0.5
    guess = decoded.reshape(len(decoded), 100, -1)[where] >= 0.5
    counts = np.stack([cells, cells & ~guess, guess & ~cells]).sum(2)  # [3, steps, C]
    return counts.mean(1) if len(cells) else np.full((3, cells.shape[-1]), np.nan)


def format_cells(errors: np.ndarray, names: list[str]) -> str:
    return ", ".join(f"{name} {missed:.2f}/{spurious:.2f}/{n:.2f}" for name, (n, missed, spurious) in zip(names, errors.T))


def prior_rows(agent: Agent, batch: dict[str, np.ndarray], ks: list[int], samples: int, name: str | Path) -> list[str]:
    """One row for the posterior, then one per ``k``: the reward head on the ``k``-step prior
    predictions from one posterior pass, averaged over ``samples`` draws of the imagined
    latents, at the steps that paid a reward and elsewhere; and, at the same steps, what the decoder
    makes of those states (``cell_errors`` per channel, averaged over the draws): does the prior
    foresee where the objects are when the reward comes, and at the other steps?"""
    head, decoder = agent.world_model.heads["reward"], agent.world_model.heads["decoder"]
    names = channel_names(agent.config.task.removeprefix("minatar_"))
    with torch.no_grad():
        observed = agent.world_model.observe(batch)
        paid, vector = batch["reward"].ravel() != 0, batch["vector"].reshape(batch["reward"].size, -1)
        posterior = head(observed.feat).mean.cpu().numpy().ravel()
        decoded = decoder(observed.feat)["vector"].mean.cpu().numpy().reshape(vector.shape)
        rows = [f"| {name} | posterior | {int(paid.sum()):,} | {mean(posterior[paid])} | {mean(posterior[~paid])} | "
                f"{format_cells(cell_errors(decoded, vector, paid), names)} | "
                f"{format_cells(cell_errors(decoded, vector, ~paid), names)} |"]
        for k in ks:
            draws, errors, valid = [], [], None
            paid_k, vector_k = batch["reward"][:, k:].ravel() != 0, batch["vector"][:, k:].reshape(-1, vector.shape[-1])
            for _ in range(samples):
                state, valid = imagined_from_posterior(agent, batch, k, observed)
                feat = agent.world_model.rssm.get_feat(state)
                draws.append(head(feat).mean.squeeze(-1).cpu().numpy())
                decoded = decoder(feat)["vector"].mean.cpu().numpy()
                errors.append([cell_errors(decoded, vector_k, where) for where in (paid_k & valid, ~paid_k & valid)])
            predicted, errors = np.mean(draws, 0), np.mean(errors, 0)
            rows.append(f"| {name} | {k}-step prior | {int((paid_k & valid).sum()):,} | "
                        f"{mean(predicted[paid_k & valid])} | {mean(predicted[~paid_k & valid])} | "
                        f"{format_cells(errors[0], names)} | {format_cells(errors[1], names)} |")
    return rows


CODE_HEADER = ("| run | posterior entropy, nats per latent (uniform) | 1-step prior entropy | 1-step prior's mode = "
               "posterior's mode, share of latents | objects missed / spurious / set per step, 1-step prior's mode |")


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of each categorical latent: ``[..., stoch, classes]`` logits → ``[..., stoch]``."""
    return -(torch.softmax(logits, -1) * torch.log_softmax(logits, -1)).sum(-1)


def code_row(agent: Agent, batch: dict[str, np.ndarray], name: str | Path) -> str:
    """How sure and how predictable the latent code is: the mean entropy of the posterior's and of
    the one-step prior's categorical latents, how often the prior's most likely class is the
    posterior's, and what the decoder makes of the prior's most likely code (no draw). A world
    model whose code the prior can foresee (MinAtar Breakout) has a sure posterior and a prior that
    agrees with it; where the prior's code is a guess, imagination loses the objects."""
    rssm = agent.world_model.rssm
    with torch.no_grad():
        observed = agent.world_model.observe(batch)
        prior, valid = imagined_from_posterior(agent, batch, 1, observed, draw="mode")
        target = observed.post["logits"][:, 1:].reshape(prior["logits"].shape)
        valid = torch.as_tensor(valid)
        agree = (prior["logits"].argmax(-1) == target.argmax(-1))[valid].float().mean().item()
        decoded = agent.world_model.heads["decoder"](rssm.get_feat(prior))["vector"].mean.cpu().numpy()
    vector = batch["vector"][:, 1:].reshape(len(decoded), -1)
    names = channel_names(agent.config.task.removeprefix("minatar_"))
    return (f"| {name} | {entropy(target)[valid].mean():.2f} ({math.log(rssm.classes):.2f}) | "
            f"{entropy(prior['logits'])[valid].mean():.2f} | {agree:.2f} | "
            f"{format_cells(cell_errors(decoded, vector, valid.numpy()), names)} |")


PRIOR_HEADER = ("| run | reward head on | rewarded steps | reward head where rewarded | reward head elsewhere | "
                "objects missed / spurious / set per step where rewarded, by channel | the same elsewhere |")


def prior_table(rows: list[str], out: Path | None) -> None:
    """Prints ``prior_rows``' rows as a table under ``PRIOR_HEADER``, appended to ``out`` if given."""
    extra_table(PRIOR_HEADER, rows, out)


def extra_table(header: str, rows: list[str], out: Path | None) -> None:
    """Prints ``rows`` as a table under ``header``, appended to ``out`` if given."""
    table = Table(header)
    for row in rows:
        table.add(row)
    table.save(out, append=True)


def run_row(logdir: Path, steps: int, chunk: int) -> str:
    agent, checkpoint = load_agent(logdir)
    return head_row(logdir, agent, checkpoint, *newest_steps(logdir, steps, chunk))


def head_row(logdir: Path, agent: Agent, checkpoint: Path, batch: dict[str, np.ndarray], starts: int) -> str:
    stats = head_stats(agent, batch)
    names = channel_names(agent.config.task.removeprefix("minatar_"))
    actions = agent.world_model.action_dim
    shares = np.bincount(stats["modes"], minlength=actions) / len(stats["modes"])
    return (f"| {logdir} | {int(checkpoint.name):,} | {starts} | {batch['reward'].size:,} | "
            f"{len(stats['rewarded']):,} | {mean(stats['rewarded'])} | {mean(stats['elsewhere'])} | "
            f"{stats['entropy'].mean():.3f} ({math.log(actions):.3f}) | "
            f"{' '.join(f'{s:.2f}' for s in shares)} | "
            f"{', '.join(f'{name} {m:.2f}/{n:.2f}' for name, m, n in zip(names, stats['missed'], stats['set']))} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logdirs", nargs="+", type=Path)
    parser.add_argument("--steps", type=int, default=20_000, help="newest stored steps per run")
    parser.add_argument("--chunk", type=int, default=100, help="steps per sequence from the zero state")
    parser.add_argument("--out", type=Path, help="also write the table as Markdown here")
    parser.add_argument("--prior", type=prior_steps, default=[], help="also the reward head on the k-step prior "
                        "predictions (imagination along the replay's actions), e.g. 1,2,3,5,8")
    parser.add_argument("--samples", type=int, default=4, help="draws of the imagined latents per --prior k")
    parser.add_argument("--code", action="store_true", help="also how sure and how predictable the latent code "
                        "is: posterior and one-step prior entropy, agreement of their modes")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)  # the posterior samples its latents: the same seed gives the same table
    table = Table(HEADER)
    prior, code = [], []
    for logdir in args.logdirs:
        agent, checkpoint = load_agent(logdir)
        batch, starts = newest_steps(logdir, args.steps, args.chunk)
        table.add(head_row(logdir, agent, checkpoint, batch, starts))
        if args.prior:
            prior += prior_rows(agent, batch, args.prior, args.samples, logdir)
        if args.code:
            code.append(code_row(agent, batch, logdir))
    table.save(args.out)
    if args.prior:
        prior_table(prior, args.out)
    if args.code:
        extra_table(CODE_HEADER, code, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
