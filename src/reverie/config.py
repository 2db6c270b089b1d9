"""Typed configuration: the schema, the presets, dotted overrides and validation.

The dataclass defaults are the paper's Atari hyper parameters (Table D1 of Hafner et al.,
ICLR 2021); presets in ``reverie/presets/*.yaml`` are partial overrides applied left to
right, then ``key=value`` overrides from the command line. Every field names the paper's
symbol where there is one. Where the paper is silent, the official TF2 code
(danijar/dreamerv2, ``configs.yaml``) decides.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import io
import json
import math
import re
import tokenize
import types
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from reverie.errors import ConfigError
from reverie.schedules import parse_schedule, schedule_endpoints

# A hyper parameter that may be a constant or a schedule string such as
# ``linear(3e-4,1e-4,2500000)``, evaluated at the agent step (``Agent.step``: agent steps,
# prefill included, as the official code's ``tfstep``; see ``reverie.schedules``).
Schedule = float | str

__all__ = ["Config", "ConfigError", "load_config", "load_config_file", "set_value", "get_value", "all_keys",
           "validate", "explain", "default_preset"]


# Value rules. Each field declares what it accepts beside its comment, as
# ``name: type = value(default, rule)``; ``set_value`` checks the rule on every assignment
# (presets, overrides, a saved config.yaml) and ``validate`` checks every field plus the rules
# between fields (``CROSS_RULES``). ``paper=True`` marks a default that is the paper's value
# (Table D1), which a violation then quotes.
@dataclass(frozen=True)
class Rule:
    """What a field accepts: ``text`` reads as "must be <text>"; ``test`` takes the value
    after type coercion (schedule strings are tested at their endpoints)."""

    text: str
    test: Callable[[Any], bool]


def at_least(low: int | float) -> Rule:
    return Rule(f">= {low}", lambda v: v >= low)


def above(low: float) -> Rule:
    return Rule(f"> {low}", lambda v: v > low)


def between(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Rule:
    text = f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    return Rule(text, lambda v: (v > low if low_open else v >= low) and (v < high if high_open else v <= high))


def each(rule: Rule, length: int | None = None) -> Rule:
    """A list whose items all pass ``rule`` (and of exactly ``length`` items, if given)."""
    count = f"{length} values" if length else "one or more values"
    return Rule(f"{count}, each {rule.text}",
                lambda v: (len(v) == length if length else len(v) >= 1) and all(rule.test(x) for x in v))


DISTINCT = Rule("a list without repeats", lambda v: len(set(v)) == len(v))
CLASSES = Rule("0 (diagonal Gaussian latents, the ablation) or >= 2", lambda v: v == 0 or v >= 2)


def value(default: Any, rule: Rule, paper: bool = False) -> Any:
    """A dataclass field with its default and rule; lists get a fresh copy per instance."""
    meta = {"rule": rule, "paper": paper}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class RunConfig:
    steps: int = value(50_000_000, at_least(1))  # agent steps; frames = steps × env.action_repeat (200M frames)
    train_every: int = value(4, at_least(1), paper=True)  # agent steps per update (Table D1 "environment steps per update")
    train_steps: int = value(1, at_least(1))  # gradient updates each time training is due
    # Agent steps of uniform random policy before learning (official code). Acting stays random
    # after them until the replay can give a sequence under replay.ongoing and replay.minlen
    # (the official prefill runs until an episode has finished, too).
    prefill: int = value(50_000, at_least(0))
    # Updates run once when prefill ends. Then one update on the first policy step and one every
    # train_every agent steps after it (the official ``Every`` fires on its first call). The
    # official loop makes one more update at the start, to build its variables, before its own
    # ``pretrain``: official pretrain p is Reverie's p + 1 (atari_official: 2).
    pretrain: int = value(1, at_least(0))
    log_every: int = value(10_000, at_least(1))  # agent steps between metric/video writes
    eval_every: int = value(250_000, at_least(0))  # agent steps between evaluations (official: 2.5e5; 0 = none)
    eval_episodes: int = value(1, at_least(1))  # episodes per evaluation, mode="eval"
    # Also evaluate the sampled-action policy (the actor's samples, not its mode) on the same
    # eval episodes' seeds, logged as eval/return_sample; eval/return stays the mode (paper,
    # official code). Off by default: it doubles the evaluation's cost.
    eval_sample: bool = False
    checkpoint_every: int = value(100_000, at_least(1))  # agent steps between checkpoints
    keep_checkpoints: int = value(3, at_least(1))  # newest complete checkpoints kept on disk
    video_every: int = value(0, at_least(0))  # agent steps between open-loop videos (0 = with every log)
    # Environments stepped at once (official ``envs``), with one batched policy call per round.
    # Every count above (steps, prefill, train_every, log/eval/checkpoint) is in agent steps
    # summed over the envs, as the official code counts. 1 is the paper's and today's runs bit
    # for bit; env.parallel says where the envs run. A resume must keep it (it changes the data).
    envs: int = value(1, at_least(1))


@dataclass
class EnvConfig:
    action_repeat: int = value(4, at_least(1), paper=True)  # frames per agent step, rewards summed (Machado et al. 2018)
    size: list[int] = value([64, 64], each(at_least(1), 2), paper=True)  # image [H, W]
    grayscale: bool = True  # Atari frames as 1 channel
    sticky_actions: float = value(0.25, between(0, 1), paper=True)  # ALE repeat_action_probability (Machado et al. 2018)
    full_action_space: bool = True  # all 18 Atari actions for every game (official code: the game's minimal set)
    noops: int = value(0, at_least(0))  # Atari: 1..noops random no-op frames after each reset (paper: none; official code: 30)
    time_limit: int = value(108_000, at_least(0), paper=True)  # frames (not agent steps) before truncation; 0 = none
    life_loss: bool = False  # treat a lost life as episode end (the paper does not)
    reward_transform: Literal["tanh", "identity", "sign"] = "tanh"  # world-model reward target only
    camera: int = value(-1, at_least(-1))  # DMC camera id; -1 = standard (2 for quadruped, else 0)
    # Where the run.envs > 1 training envs run (official ``envs_parallel``): "process", one
    # worker process each (stdlib multiprocessing, spawn), stepped concurrently; "none", all in
    # the run's process, one after the other. Same numbers either way; one env never gets a worker.
    parallel: Literal["process", "none"] = "process"


@dataclass
class ReplayConfig:
    capacity: int = value(2_000_000, at_least(1), paper=True)  # FIFO dataset size in agent steps (Table D1)
    batch: int = value(50, at_least(1), paper=True)  # B, sequences per batch (Table D1)
    length: int = value(50, at_least(1), paper=True)  # L, sequence length (Table D1)
    chunk: int = value(1024, at_least(1))  # agent steps per on-disk chunk of a running episode
    # Sequence start. With prioritize_ends, uniform in [0, len] clipped to len − L (official
    # replay, minlen = maxlen = L): the episode's last window is drawn L + 1 times as often as
    # any other start. Without it, clip_start decides: uniform in [0, len) clipped to len − L
    # (paper sec. 2.1, "to observe enough episode ends": the last window L times as often), or,
    # clip_start false, uniform over the len − L + 1 starts that fit (official replay with
    # prioritize_ends false, its DMC setting: every window equally often).
    prioritize_ends: bool = False
    clip_start: bool = True
    # A window may run past its episode's end into the next stored episode, behind an is_first
    # (DreamerV3's replay; not the paper's, nor the official code's): the start is uniform in
    # [0, len), never clipped (clip_start does not apply). In every windowed rule above, an episode's
    # last step can sit only at the window's last position, L − 1; a world model trained from the
    # zero state then learns "step L − 1 since the start" as a cue for the episode's end, and in
    # imagination, which runs past L, its discount head calls the game over. MinAtar Asterix,
    # L = 16: the continuation falls to 0.3–0.5 from the 16th step on, on the posterior too
    # (benchmarks/results/learning/minatar_v2/asterix.md, "The discount head counts the steps").
    cross_episodes: bool = False
    # Sample the running episode too (official ``ongoing``: false). Reverie's default: true, so a
    # long Atari episode (up to 27,000 agent steps) is learned from before it ends.
    ongoing: bool = True
    # Never sample an episode with fewer than minlen agent steps (the reset step not counted;
    # official ``minlen``: 50 = L); 0 keeps every episode, and one shorter than L continues into
    # the next stored episode behind an is_first (Reverie's default). Such episodes stay stored.
    minlen: int = value(0, at_least(0))


@dataclass
class RSSMConfig:
    deter: int = value(600, at_least(1), paper=True)  # size of the deterministic GRU state h_t ("RSSM number of units")
    hidden: int = value(600, at_least(1), paper=True)  # hidden units of the prior/posterior MLPs
    stoch: int = value(32, at_least(1), paper=True)  # number of categorical latents ("discrete latent dimensions")
    classes: int = value(32, CLASSES, paper=True)  # classes per latent; 0 = diagonal Gaussian of `stoch` dims (ablation)
    layer_norm: bool = True  # LayerNorm inside the GRU (official code; false = ablation)
    min_std: float = value(0.1, at_least(0))  # Gaussian variant: std = 2·sigmoid(x/2) + min_std (official code)


@dataclass
class EncoderConfig:
    depth: int = value(48, at_least(1))  # CNN channels depth×(1,2,4,8)
    kernels: list[int] = value([4, 4, 4, 4], each(at_least(1)))  # stride 2 each
    # Encoder of ``vector`` observations (images always take the CNN above): "mlp", an MLP on the
    # flat vector (the official code; the default, the minatar preset's too), or "grid": 3×3
    # convolutions, stride 1, padding 1, ELU after each, over the vector folded back to its grid
    # of 0/1 cells [H, W, C], one set of weights for every cell. Needs an env that gives the grid
    # (MinAtar). The MinAtar DreamerV2 ports (RajGhugare19/dreamerv2, kenjyoung/dreamerv2_JAX)
    # encode with 3 such convs, unpadded, of 16·(1, 2, 4) channels (10→8→6→4); padded ones of one
    # width keep 10×10, so every cell keeps its own column of the embedding, and the zero border
    # reads as empty cells.
    kind: Literal["mlp", "grid"] = "mlp"
    mlp_layers: int = value(4, at_least(0))  # MLP encoder for vector observations
    mlp_units: int = value(400, at_least(1))  # MLP hidden units
    grid_layers: int = value(3, at_least(1))  # grid encoder: number of 3×3 convs (the ports: 3)
    grid_depth: int = value(16, at_least(1))  # grid encoder: channels of every conv; embedding H·W·grid_depth


@dataclass
class DecoderConfig:
    depth: int = value(48, at_least(1))  # transposed-CNN channels
    kernels: list[int] = value([5, 5, 6, 6], each(at_least(1)))  # stride 2 each
    # Decoder of ``vector`` observations: "mlp", or "grid" (see world_model.encoder.kind):
    # features → Linear → [H, W, grid_depth], ELU, then grid_layers 3×3 convs (stride 1, padding
    # 1, ELU between), the last giving C values per cell; the likelihood (vector_dist) is that of
    # the MLP, over the same flat vector. The ports: Linear, then 3 transposed 3×3 convs from
    # 4×4 (kenjyoung/dreamerv2_JAX: Bernoulli logits; RajGhugare19/dreamerv2: Normal(mean, 1)).
    kind: Literal["mlp", "grid"] = "mlp"
    mlp_layers: int = value(4, at_least(0))  # MLP decoder for vector observations
    mlp_units: int = value(400, at_least(1))  # MLP hidden units
    grid_layers: int = value(3, at_least(1))  # grid decoder: 3×3 convs after the Linear, the last to C per cell
    grid_depth: int = value(16, at_least(1))  # grid decoder: channels of the Linear's grid and of the hidden convs
    # Likelihood of ``vector`` observations: Normal(mean, 1) as the paper's image decoder, or
    # Bernoulli(logits) for 0/1 grids (MinAtar), where a missed one-cell object costs ~4.6 nats
    # at p = 0.01 instead of 0.5. Images always use Normal(mean, 1).
    vector_dist: Literal["normal", "bernoulli"] = "normal"


@dataclass
class HeadsConfig:
    layers: int = value(4, at_least(0), paper=True)  # reward and discount MLP layers ("MLP number of layers")
    units: int = value(400, at_least(1), paper=True)  # reward and discount MLP units ("MLP number of units")
    discount: bool = True  # predict the discount (Bernoulli on γ·(1 − terminal)); false for DMC


@dataclass
class KLConfig:
    scale: float = value(0.1, at_least(0), paper=True)  # β, KL loss scale (Table D1)
    balance: float = value(0.8, between(0, 1), paper=True)  # α, KL balancing; 0.5 = no balancing (ablation)
    free: float = value(0.0, at_least(0))  # free nats, applied to the batch-mean KL (official code)
    free_avg: bool = True  # free nats on the batch mean (true) or per step (false)


@dataclass
class LossScales:
    image: float = value(1.0, at_least(0))  # image log-likelihood (also vector observations)
    reward: float = value(1.0, at_least(0))  # reward log-likelihood
    discount: float = value(1.0, at_least(0))  # discount log-likelihood (official code: 5)


@dataclass
class OptConfig:
    lr: Schedule = value(2e-4, above(0))  # learning rate, constant or schedule
    eps: float = value(1e-5, above(0), paper=True)  # Adam epsilon (Table D1)
    clip: float = value(100.0, above(0), paper=True)  # global-norm gradient clipping (Table D1)
    weight_decay: float = value(1e-6, between(0, 1, high_open=True), paper=True)  # decoupled: params *= (1 − wd) before each step (official code)


@dataclass
class WorldModelConfig:
    rssm: RSSMConfig = field(default_factory=RSSMConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    heads: HeadsConfig = field(default_factory=HeadsConfig)
    kl: KLConfig = field(default_factory=KLConfig)
    loss_scales: LossScales = field(default_factory=LossScales)
    # Heads whose loss trains the representation; the others see stop_grad(features).
    grad_heads: list[Literal["image", "reward", "discount"]] = value(["image", "reward", "discount"], DISTINCT)
    opt: OptConfig = field(default_factory=lambda: OptConfig(lr=2e-4))


@dataclass
class ActorConfig:
    layers: int = value(4, at_least(0), paper=True)  # MLP layers
    units: int = value(400, at_least(1), paper=True)  # MLP units
    dist: Literal["auto", "onehot", "trunc_normal"] = "onehot"  # auto: by action space
    min_std: float = value(0.1, at_least(0))  # truncated-normal actor: lower bound of std (official code)


@dataclass
class CriticConfig:
    layers: int = value(4, at_least(0), paper=True)  # MLP layers
    units: int = value(400, at_least(1), paper=True)  # MLP units


@dataclass
class BehaviorConfig:
    horizon: int = value(15, at_least(1), paper=True)  # H, imagination horizon (Table D1)
    # γ (Table D1: 0.995). Also the discount-head target γ·(1 − terminal). The paper's
    # section 2.1 text says 0.999, which is the official code's value (atari_official).
    discount: float = value(0.995, between(0, 1, low_open=True), paper=True)
    # λ, λ-target parameter (Table D1); 1 = Monte Carlo bootstrapped at H. 0 is accepted on purpose:
    # the one-step TD target r_t + γ·d_t·v_{t+1} (d: the discount head's continuation); nothing divides by λ.
    return_lambda: float = value(0.95, between(0, 1), paper=True)
    reinforce_mix: Schedule = value(1.0, between(0, 1), paper=True)  # ρ, actor gradient mixing: 1 = Reinforce, 0 = dynamics
    entropy: Schedule = value(1e-3, at_least(0), paper=True)  # η, actor entropy loss scale (Table D1)
    slow_critic_every: int = value(100, at_least(1), paper=True)  # updates between slow-critic refreshes (Table D1)
    slow_critic_fraction: float = value(1.0, between(0, 1, low_open=True))  # mix of the critic copied into the slow critic
    # Action noise of the official code (``expl_noise``, ``eval_noise``; both 0 there and in the
    # paper): with probability ε the action is replaced by a uniform one (discrete), or
    # Normal(action, ε) clipped to [−1, 1] (continuous). A number or a schedule, evaluated at
    # the agent step. The ``minatar`` preset explores with it; see that preset.
    expl_noise: Schedule = value(0.0, between(0, 1))  # ε while acting to collect data (mode "train")
    eval_noise: Schedule = value(0.0, between(0, 1))  # ε in evaluation episodes (mode "eval")
    actor: ActorConfig = field(default_factory=ActorConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    actor_opt: OptConfig = field(default_factory=lambda: OptConfig(lr=4e-5))
    critic_opt: OptConfig = field(default_factory=lambda: OptConfig(lr=1e-4))


@dataclass
class Config:
    seed: int = value(0, between(0, 2**32 - 1))  # seeds torch, numpy, Python and the environments
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto = cuda when available
    task: str = "atari_pong"  # atari_<rom>, dmc_<domain>_<task>, gym_<id> (`reverie tasks`)
    logdir: str = ""  # run directory; empty = runs/<task>/<seed>
    deterministic: bool = False  # torch deterministic algorithms (exact resume tests)
    precision: Literal["fp32", "bf16"] = "fp32"  # autocast dtype for networks; losses in fp32
    # torch.compile the observe loop and the imagination whole (one graph each), the prior
    # step, the heads, actor and critics. The numbers are the same up to float rounding, except
    # that compiled code draws its random numbers differently (same distributions). The first
    # update compiles: minutes on a small CPU the first time (gym,cartpole, 2-core VM: 4 min),
    # seconds once Inductor has cached it. On the CPU it needs a C++ compiler (g++; without
    # one the run warns and goes uncompiled). Preset `cartpole` turns it on (docs/SPEED.md).
    compile: bool = False
    # CPU threads for torch's ops; 0 = torch's default (one per core). Tiny models run
    # faster on one: their ops are too small to split, and each split waits for the other
    # threads (docs/SPEED.md: debug update 63 → 36 ms on 2 cores).
    threads: int = value(0, at_least(0))
    # How torch's idle CPU threads wait for the next op (OpenMP's OMP_WAIT_POLICY, which the
    # CLI sets before torch loads): "passive" sleeps at once, which keeps a run fast when other
    # processes compete for the cores; "active" spins, which saves a wake-up per op, worth it
    # for small models with many short ops on an otherwise idle machine (gym,cartpole on 2
    # threads: 118 vs 264 ms per update), and several times slower when a core is shared
    # (789 ms at load 2.7). No effect with threads = 1; an OMP_WAIT_POLICY you set wins.
    wait: Literal["passive", "active"] = "passive"
    run: RunConfig = field(default_factory=RunConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    world_model: WorldModelConfig = field(default_factory=WorldModelConfig)
    behavior: BehaviorConfig = field(default_factory=BehaviorConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def save(self, path: str | Path) -> None:
        """Write the resolved config as YAML atomically."""
        from reverie.utils import atomic_write_text

        atomic_write_text(Path(path), self.to_yaml())


# Rules between fields, checked once presets and overrides are applied:
# (keys, test, rule as the error states it).
CROSS_RULES: list[tuple[tuple[str, ...], Callable[[Config], bool], str]] = [
    (("replay.length", "replay.capacity"), lambda c: c.replay.length <= c.replay.capacity,
     "replay.length <= replay.capacity (a training sequence must fit in the dataset)"),
    (("run.prefill", "replay.length"), lambda c: c.run.prefill >= c.replay.length,
     "run.prefill >= replay.length (the random-policy prefill must hold one training sequence)"),
    (("replay.cross_episodes", "replay.prioritize_ends"), lambda c: not (c.replay.cross_episodes and c.replay.prioritize_ends),
     "not both (windows that cross episodes have no end to prioritize: set one of them false)"),
]


# Keys that shape the networks or the data (the seed draws the data): a resumed run refuses to
# change them (``reverie.run.train.check_resume``).
MODEL_KEYS = ("seed", "task", "env.", "run.envs", "replay.length", "world_model.", "behavior.actor.",
              "behavior.critic.")
RESUMABLE_KEYS = ("env.parallel",)  # under MODEL_KEYS, yet the same numbers either way: a resume may change them
# Keys in which a resumed run may differ from the config its preset composes now: its folder (a
# run copied elsewhere), its threads (a sweep's --cpus-per-run) and its target (--steps; a run
# finished at fewer steps is extended), and RESUMABLE_KEYS.
RUN_OWN_KEYS = ("logdir", "threads", "run.steps", *RESUMABLE_KEYS)


def preset_names() -> list[str]:
    folder = resources.files("reverie") / "presets"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


SUITE_PRESETS = ("atari", "dmc", "gym", "minatar")  # suites with a preset of their own name
# Presets that only resize a suite's preset: each must come after that preset, on that suite's tasks.
PRESET_BASES = {"dmc_small": "dmc"}


def preset_stack(name: str) -> list[str]:
    """The presets ``name`` is loaded with on its own: its base first where it has one."""
    return [PRESET_BASES[name], name] if name in PRESET_BASES else [name]


def default_preset(task: str) -> str:
    """The preset a task trains and is benchmarked with when none is named: its suite's own
    (the prefix of the task name: ``dmc_walker_walk`` takes ``dmc``), else ``atari``."""
    suite = task.split("_", 1)[0]
    return suite if suite in SUITE_PRESETS else "atari"


def read_preset(name: str) -> dict[str, Any]:
    path = resources.files("reverie") / "presets" / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown preset {name!r}{_suggest(name, preset_names())}; presets: {', '.join(preset_names())}")
    return yaml.safe_load(path.read_text()) or {}


def load_config(
    presets: str | list[str] | None = "atari",
    overrides: list[str] | None = None,
    base: dict[str, Any] | None = None,
) -> Config:
    """Resolve a config: defaults, then ``base``, then presets left to right, then overrides.

    ``presets`` is a comma-separated string or a list (``"atari,no_layer_norm"``);
    ``overrides`` are dotted ``key=value`` strings (``"replay.batch=16"``), parsed as YAML
    values and checked against the field's type.

    A preset that names a ``task`` (``atari``, ``dmc``, ``gym,cartpole``) is a base that later
    presets refine; so is one that resizes a suite's preset (``PRESET_BASES``: ``dmc,dmc_small``),
    which must follow that preset and train that suite's tasks. One that names none (``debug``,
    an ablation, ``schedules``) is a change a user asked for: a later preset that changes one of
    its values warns, naming both presets and the key (``debug,atari`` would train 50M steps),
    instead of silently undoing it.
    """
    config = Config()
    if base:
        _apply_nested(config, base, source="base config")
    if isinstance(presets, str):
        presets = [p.strip() for p in presets.split(",") if p.strip()]
    owners: dict[str, str] = {}  # key → the earlier preset without a task that set it
    for index, name in enumerate(presets or []):
        _check_base(name, presets[:index])
        data = read_preset(name)
        before = {key: get_value(config, key) for key in owners}
        _apply_nested(config, data, source=f"preset {name!r}")
        _warn_undone(config, name, before, owners)
        if "task" not in data and name not in PRESET_BASES:  # a resizing preset is a base too
            owners.update(dict.fromkeys(_leaf_keys(data), name))
    for item in overrides or []:
        key, value = parse_override(item)
        set_value(config, key, value)
    for name in set(presets or []) & PRESET_BASES.keys():
        _check_base(name, presets, task=config.task)
    validate(config)
    return config


def _check_base(name: str, earlier: list[str], task: str | None = None) -> None:
    """A preset of ``PRESET_BASES`` after its base preset, and (given ``task``) on its suite's tasks."""
    base = PRESET_BASES.get(name)
    if base is None:
        return
    if base not in earlier:
        raise ConfigError(f"preset {name!r} resizes the {base!r} preset: compose it after that one, "
                          f"--preset {base},{name}")
    if task is not None and default_preset(task) != base:
        raise ConfigError(f"preset {name!r} is for {base}_ tasks, not task {task!r}: pick a {base}_ task "
                          f"(reverie tasks --suite {base}) or drop {name!r} from --preset")


def validate(config: Config) -> Config:
    """Check every field's rule and the rules between fields (``CROSS_RULES``); raise a
    ``ConfigError`` naming the key, the value, the rule and the paper's value where there is one.
    ``load_config`` calls it; call it after changing a ``Config`` in Python."""
    for key in all_keys(config):
        _check_rule(key, get_value(config, key), _field_of(key))
    for keys, test, text in CROSS_RULES:
        if not test(config):
            values = " and ".join(f"{key} = {get_value(config, key)!r}" for key in keys)
            raise ConfigError(f"config keys {values} break the rule {text}")
    return config


def explain(key: str) -> str:
    """``reverie config --explain KEY``: the field's comment (the paper's symbol and meaning),
    its type, rule, default, the value each preset gives it and the rules between fields;
    for a section (``world_model.kl``), every key in it."""
    section = [k for k in all_keys() if k.startswith(key + ".")]
    if key not in all_keys() and section:  # a section: every key in it
        return "\n\n".join(explain(k) for k in section)
    if key not in all_keys():
        raise ConfigError(f"unknown config key {key!r}{_suggest(key, all_keys())} (`reverie config` lists every key)")
    *sections, name = key.split(".")
    owner: Any = Config
    for part in sections:
        owner = typing.get_type_hints(owner)[part]
    spec, hint = _field_of(key), typing.get_type_hints(owner)[name]
    rule: Rule | None = spec.metadata.get("rule")
    default = get_value(Config(), key)
    lines = [f"{key}: {_field_comments(owner).get(name, '(no comment)')}",
             f"  type:     {hint.__name__ if isinstance(hint, type) else str(hint).replace('typing.', '')}",
             f"  rule:     {'must be ' + rule.text if rule else 'any value of the type'}",
             f"  default:  {default!r}" + ("  (the paper's value, Table D1 / section 3)" if spec.metadata.get("paper") else "")]
    width = max(map(len, preset_names())) + 2
    for preset in preset_names():
        data: Any = read_preset(preset)
        for part in key.split("."):
            data = data.get(part, _MISSING) if isinstance(data, dict) else _MISSING
        if data is not _MISSING:
            lines.append(f"  preset {preset + ':':<{width}}{data}")
    lines += [f"  also:     {text}" for keys, _, text in CROSS_RULES if key in keys]
    return "\n".join(lines)


_MISSING = object()


def _field_comments(cls: type) -> dict[str, str]:
    """``{field: comment}`` from the source of a schema dataclass: the comment lines right
    above a field and the comment at the end of its line, joined."""
    source, _ = inspect.getsourcelines(cls)
    comments = {token.start[0]: token.string.lstrip("# ").rstrip()
                for token in tokenize.generate_tokens(io.StringIO("".join(source)).readline)
                if token.type == tokenize.COMMENT}
    out = {}
    for row, line in enumerate(source, 1):
        match = re.match(r"    (\w+)\s*:", line)
        if not match:
            continue
        above = []
        while row - len(above) - 1 in comments and source[row - len(above) - 2].lstrip().startswith("#"):
            above.insert(0, comments[row - len(above) - 1])
        own = [comments[row]] if row in comments and not line.lstrip().startswith("#") else []
        out[match.group(1)] = " ".join(above + own)
    return out


def load_config_file(path: str | Path) -> Config:
    """Load a resolved config written by ``Config.save`` (strict: unknown keys fail)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        reason = " ".join(str(error).split())  # YAML's messages span lines; the CLI prints one
        raise ConfigError(f"cannot read config {path}: {reason}; restore the file, or start a new run in "
                          "another --logdir") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} is empty or not a mapping of keys; restore the file, or start a new "
                          "run in another --logdir")
    try:
        return load_config(presets=None, base=data)
    except ConfigError as error:
        raise ConfigError(f"config {path}: {error}") from None


def parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not key=value, e.g. replay.batch=16")
    key, text = item.split("=", 1)
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    return key.strip(), value


def all_keys(config: Any = None, prefix: str = "") -> list[str]:
    """Every dotted leaf key of the schema."""
    config = Config() if config is None else config
    keys = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            keys.extend(all_keys(value, f"{prefix}{f.name}."))
        else:
            keys.append(prefix + f.name)
    return keys


def get_value(config: Config, key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        node = getattr(node, part)
    return node


def set_value(config: Config, key: str, value: Any) -> None:
    """Set a dotted key, checking that it exists and that the value has the field's type."""
    parts = key.split(".")
    node: Any = config
    for depth, part in enumerate(parts):
        names = {f.name: f for f in dataclasses.fields(node)}
        if part not in names:
            raise ConfigError(f"unknown config key {key!r}{_suggest(key, all_keys())} (`reverie config` lists every key)")
        if depth == len(parts) - 1:
            if dataclasses.is_dataclass(getattr(node, part)):
                raise ConfigError(f"config key {key!r} is a section; set one of its fields, e.g. {key}.{dataclasses.fields(getattr(node, part))[0].name}=...")
            hints = typing.get_type_hints(type(node))
            coerced = _coerce(key, value, hints[part])
            _check_rule(key, coerced, names[part])
            setattr(node, part, coerced)
            return
        node = getattr(node, part)
        if not dataclasses.is_dataclass(node):
            raise ConfigError(f"config key {key!r}: {'.'.join(parts[: depth + 1])!r} is a value, not a section")


def changed_keys(old: Config, new: Config) -> list[str]:
    """Every dotted key whose value differs between two configs, in schema order."""
    return [key for key in all_keys() if get_value(old, key) != get_value(new, key)]


def setting_changes(old: Config, new: Config, ignore: tuple[str, ...] = ()) -> list[str]:
    """``key: old → new`` for every key whose value differs, but keys that start with an entry
    of ``ignore`` (a section's prefix such as ``"world_model."``, or a whole key)."""
    return [f"{key}: {get_value(old, key)!r} → {get_value(new, key)!r}" for key in changed_keys(old, new)
            if not key.startswith(ignore)]


def model_changes(old: Config, new: Config) -> list[str]:
    """Keys that differ between two configs and would change the model or the data."""
    return [key for key in changed_keys(old, new) if key.startswith(MODEL_KEYS) and key not in RESUMABLE_KEYS]


def _warn_undone(config: Config, name: str, before: dict[str, Any], owners: dict[str, str]) -> None:
    """One line per earlier preset whose values preset ``name`` changed (``before``: those
    values); the changed keys leave ``owners``."""
    undone: dict[str, list[str]] = {}
    for key, value in before.items():
        if get_value(config, key) != value:
            undone.setdefault(owners.pop(key), []).append(f"{key} = {value!r}")
    for owner, values in undone.items():
        warnings.warn(f"preset {name!r} changes {', '.join(values)} set by preset {owner!r} (presets apply left "
                      f"to right: name {owner!r} after {name!r} to keep them)", stacklevel=3)


def _leaf_keys(data: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys a preset's nested mapping sets: ``{"run": {"steps": 1}}`` → ``["run.steps"]``."""
    return [leaf for name, value in data.items()
            for leaf in (_leaf_keys(value, f"{prefix}{name}.") if isinstance(value, dict) else [prefix + name])]


def _apply_nested(config: Config, data: dict[str, Any], source: str, prefix: str = "") -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of keys at {prefix or 'top level'}, got {data!r}")
    for name, value in data.items():
        key = f"{prefix}{name}"
        try:
            current = get_value(config, key)
        except AttributeError:
            raise ConfigError(f"{source}: unknown config key {key!r}{_suggest(key, all_keys())}") from None
        if dataclasses.is_dataclass(current):
            _apply_nested(config, value, source, prefix=key + ".")
        else:
            try:
                set_value(config, key, value)
            except ConfigError as error:
                raise ConfigError(f"{source}: {error}") from None


def _coerce(key: str, value: Any, hint: Any) -> Any:
    # PyYAML reads "5e4" and "3e-4" as strings (YAML 1.1); accept them as numbers.
    if isinstance(value, str) and hint is not str:
        try:
            value = float(value)
        except ValueError:
            pass
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Schedule or (origin in (Union, types.UnionType) and set(args) == {float, str}):
        if isinstance(value, bool):
            raise _type_error(key, value, "a number or a schedule string")
        if isinstance(value, (int, float)):
            return _finite(key, float(value))
        if isinstance(value, str):
            try:
                parse_schedule(value)
            except ValueError as error:
                raise ConfigError(f"config key {key!r}: {error}") from None
            return value
        raise _type_error(key, value, "a number or a schedule string")
    if origin is Literal:
        if value not in args:
            choices = ", ".join(map(str, args))
            raise ConfigError(f"config key {key!r} must be one of {choices}, got {value!r}{_suggest(str(value), [str(a) for a in args])}")
        return value
    if origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.strip("[]").split(",") if v.strip()]
            value = [yaml.safe_load(v) for v in value]
        if not isinstance(value, (list, tuple)):
            raise _type_error(key, value, "a list, e.g. [64, 64]")
        return [_coerce(key, v, args[0]) for v in value]
    if hint is bool:
        if not isinstance(value, bool):
            raise _type_error(key, value, "true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
            raise _type_error(key, value, "an integer, e.g. 5e4 or 50000")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error(key, value, "a number, e.g. 3e-4")
        return _finite(key, float(value))
    if hint is str:
        if not isinstance(value, str):
            return str(value) if isinstance(value, (int, float)) else _raise(_type_error(key, value, "a string"))
        return value
    raise ConfigError(f"config key {key!r} has an unsupported type {hint}")


def _field_of(key: str) -> dataclasses.Field:
    """The dataclass field of a dotted key (the key must exist)."""
    *sections, name = key.split(".")
    cls: Any = Config
    for part in sections:
        cls = typing.get_type_hints(cls)[part]
    return {f.name: f for f in dataclasses.fields(cls)}[name]


def _check_rule(key: str, value: Any, spec: dataclasses.Field) -> None:
    rule: Rule | None = spec.metadata.get("rule")
    if rule is None:
        return
    tested = schedule_endpoints(value) if isinstance(value, str) else [value]
    if all(rule.test(v) for v in tested):
        return
    paper = ""
    if spec.metadata.get("paper"):
        paper = f" (the paper uses {spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()!r})"
    raise ConfigError(f"config key {key!r} = {value!r} is not accepted: it must be {rule.text}{paper}")


def _finite(key: str, value: float) -> float:
    if not math.isfinite(value):
        raise ConfigError(f"config key {key!r} = {value!r} is not accepted: it must be a finite number")
    return value


def _raise(error: Exception) -> Any:
    raise error


def _type_error(key: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"config key {key!r} expects {expected}, got {value!r} ({type(value).__name__})")


def _suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=3, cutoff=0.5)
    if not close:
        leaf = word.split(".")[-1]
        close = [o for o in options if o.split(".")[-1] == leaf][:3]
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
