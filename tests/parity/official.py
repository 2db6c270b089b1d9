"""The official DreamerV2 agent (PyPI ``dreamerv2==2.2.0``, TF 2.15) next to Reverie in one process.

Three shims make the 2021 code import and build under TF 2.15 without editing its files:

1. ``sys.modules['gym']``: ``common/envs.py`` imports gym at module level; no env is built.
2. ``tensorflow.keras.mixed_precision.experimental``: removed after TF 2.8; ``common/nets.py``
   and ``agent.py`` only call ``global_policy`` (``Policy``/``set_policy`` map too).
3. ``tf.optimizers.Adam`` → ``tf.keras.optimizers.legacy.Adam``: the class that name meant when
   the code was written (``common/tfutils.py`` calls ``self._opt.variables()`` as a method).

A fourth, scoped one (``numpy_bool``) serves only the official replay: its
``_sample_sequence`` builds ``is_first`` with ``np.bool``, an alias removed in numpy 1.24.

The official side runs eagerly (``tf.config.run_functions_eagerly``) in float32 (config
``precision: 32``; its fp16 default is for GPUs), so that the draws injected by ``Draws`` are
taken on every call rather than frozen into a traced graph.

``WeightMap`` copies Reverie's torch parameters into the official Keras variables and maps
official gradients back to Reverie's layout. Layouts:

- ``Dense``: kernel ``[in, out]`` = torch ``weight.T``;
- ``Conv2D``: kernel ``[k, k, in, out]`` (HWIO) = torch ``weight [out, in, k, k]`` permuted (2, 3, 1, 0);
- ``Conv2DTranspose``: kernel ``[k, k, out, in]`` = torch ``weight [in, out, k, k]`` permuted (2, 3, 1, 0);
- GRU: one Dense over ``concat(input, state)`` → ``reset, cand, update`` (the same order as
  Reverie's ``GRUCell``), then ``LayerNormalization`` (gamma, beta = torch weight, bias);
- features: the official ``get_feat`` is ``concat(stoch, deter)``, Reverie's ``concat(deter,
  stoch)``: the input rows of every layer that reads features are swapped accordingly.
"""

from __future__ import annotations

import os
import pathlib
import sys
import types
from collections.abc import Callable
from contextlib import contextmanager

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402


def _code_folder() -> pathlib.Path:
    """The installed ``dreamerv2`` folder (a namespace package: no ``__init__.py``)."""
    import importlib.util

    spec = importlib.util.find_spec("dreamerv2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("dreamerv2 is not installed; run `make parity`")
    return pathlib.Path(list(spec.submodule_search_locations)[0])


CODE = _code_folder()


def _install_shims() -> None:
    if "gym" not in sys.modules:
        gym = types.ModuleType("gym")
        gym.spaces = types.ModuleType("gym.spaces")
        sys.modules["gym"] = gym
        sys.modules["gym.spaces"] = gym.spaces
    import tensorflow.keras.mixed_precision as kmp

    experimental = types.ModuleType("tensorflow.keras.mixed_precision.experimental")
    experimental.global_policy = tf.keras.mixed_precision.global_policy
    experimental.Policy = tf.keras.mixed_precision.Policy
    experimental.set_policy = tf.keras.mixed_precision.set_global_policy
    kmp.experimental = experimental
    sys.modules["tensorflow.keras.mixed_precision.experimental"] = experimental
    tf.optimizers.Adam = tf.keras.optimizers.legacy.Adam
    tf.keras.optimizers.Adam = tf.keras.optimizers.legacy.Adam
    # The official modules import each other as top-level `common`, `agent`, `expl`.
    if str(CODE) not in sys.path:
        sys.path.insert(0, str(CODE))


_install_shims()
tf.get_logger().setLevel("ERROR")  # as the official train.py: hides TFP's subclassing notes
tf.config.run_functions_eagerly(True)
tf.keras.mixed_precision.set_global_policy("float32")

import agent as official_agent  # noqa: E402  (official)
import common  # noqa: E402  (official)
import ruamel.yaml as yaml  # noqa: E402

NUM_ACTIONS = 18  # the full Atari action set (Reverie's atari preset, official obs/act spaces)


class Space:
    """Stand-in for a gym space: the official agent reads ``.shape``, ``.dtype`` and ``.n``."""

    def __init__(self, shape, dtype, n=None):
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        if n is not None:
            self.n = n


def official_config(preset: str = "atari", **updates) -> common.Config:
    """``configs.yaml``'s ``defaults`` + ``preset`` + fp32, then ``updates`` (dotted keys)."""
    configs = yaml.YAML(typ="safe", pure=True).load((CODE / "configs.yaml").read_text())
    config = common.Config(configs["defaults"]).update(configs[preset])
    return config.update({"precision": 32, "jit": False, **updates})


def build_official(config: common.Config, image_shape: tuple[int, ...] = (64, 64, 1), act_space=None):
    """The official ``Agent`` for ``image_shape`` images and ``act_space`` (a gymnasium
    ``Discrete`` or ``Box``; default 18 actions: the ``common.Atari`` spaces)."""
    obs_space = {
        "image": Space(image_shape, np.uint8),
        "reward": Space((), np.float32),
        "is_first": Space((), bool),
        "is_last": Space((), bool),
        "is_terminal": Space((), bool),
    }
    return official_agent.Agent(config, obs_space, {"action": official_act_space(act_space)}, common.Counter(0))


def official_act_space(space=None) -> Space:
    """A gymnasium action space as the official code reads it: ``Discrete(n)`` → one-hot
    ``[n]`` with ``.n`` (its one-hot actor), ``Box([d])`` → ``[d]`` (its truncated-normal actor)."""
    import gymnasium

    space = gymnasium.spaces.Discrete(NUM_ACTIONS) if space is None else space
    if isinstance(space, gymnasium.spaces.Discrete):
        return Space((int(space.n),), np.float32, n=int(space.n))
    return Space(space.shape, np.float32)


def create_variables(agent, batch: dict[str, np.ndarray]) -> None:
    """The official modules create their Keras layers on first call: run every network once."""
    _, post, _, _ = _wm_loss(agent, batch)
    feat = agent.wm.rssm.get_feat({k: v for k, v in post.items()})
    behavior = agent._task_behavior
    behavior.actor(feat)
    behavior.critic(feat)
    behavior._target_critic(feat)


def _wm_loss(agent, batch):
    return agent.wm.loss(to_tf(batch))


def to_tf(batch: dict[str, np.ndarray]) -> dict[str, tf.Tensor]:
    return {k: tf.constant(v) for k, v in batch.items()}


@contextmanager
def numpy_bool():
    """``np.bool`` (removed in numpy 1.24) as the builtin ``bool`` while the official replay samples."""
    had = "bool" in np.__dict__
    np.bool = bool
    try:
        yield
    finally:
        if not had:
            del np.bool


# --------------------------------------------------------------------------- weights


class WeightMap:
    """Pairs (torch parameter, Keras variable, torch→Keras layout function, name)."""

    def __init__(self, reverie_agent, official):
        self.pairs: list[tuple[str, torch.nn.Parameter, tf.Variable, Callable, Callable]] = []
        wm, owm = reverie_agent.world_model, official.wm
        deter = wm.rssm.deter
        self.deter = deter
        swap = lambda w: torch.cat([w[:, deter:], w[:, :deter]], 1)  # noqa: E731  [deter|stoch] → [stoch|deter]
        unswap = lambda w: torch.cat([w[:, -deter:], w[:, :-deter]], 1)  # noqa: E731
        dense = (lambda w: w.T, lambda k: k.T)
        feat_dense = (lambda w: swap(w).T, lambda k: unswap(k.T))
        conv = (lambda w: w.permute(2, 3, 1, 0), lambda k: k.permute(3, 2, 0, 1))
        vector = (lambda b: b, lambda b: b)

        def layer(name, torch_layer, keras_layer, kernel=dense):
            self._add(f"{name}.weight", torch_layer.weight, keras_layer.kernel, *kernel)
            self._add(f"{name}.bias", torch_layer.bias, keras_layer.bias, *vector)

        # Encoder: conv0..3.
        convs = [m for m in wm.encoder.cnn.net if isinstance(m, torch.nn.Conv2d)]
        for i, m in enumerate(convs):
            layer(f"encoder.conv{i}", m, owm.encoder._modules[f"conv{i}"], conv)
        # RSSM.
        rssm, orssm = wm.rssm, owm.rssm._modules
        # Reverie names its layers in the paper's words; OFFICIAL_NAMES maps them to the TF code's.
        from reverie.world_model.rssm import OFFICIAL_NAMES as names

        layer("rssm.recurrent_in (img_in)", rssm.recurrent_in[0], orssm[names["recurrent_in"]])
        cell = owm.rssm._cell
        layer("rssm.gru.linear", rssm.gru.linear, cell._layer)
        self._add("rssm.gru.norm.weight", rssm.gru.norm.weight, cell._norm.gamma, *vector)
        self._add("rssm.gru.norm.bias", rssm.gru.norm.bias, cell._norm.beta, *vector)
        layer("rssm.prior_head.0 (img_out)", rssm.prior_head[0], orssm[names["prior_head"] + "_0"])
        layer("rssm.prior_head.2 (img_dist)", rssm.prior_head[2], orssm["img_dist_0"])
        layer("rssm.posterior_head.0 (obs_out)", rssm.posterior_head[0], orssm[names["posterior_head"]])
        layer("rssm.posterior_head.2 (obs_dist)", rssm.posterior_head[2], orssm["obs_dist"])
        # Decoder: linear (reads features), then the transposed convs.
        dec, odec = wm.heads["decoder"].cnn, owm.heads["decoder"]._modules
        layer("decoder.linear", dec.linear, odec["convin"], feat_dense)
        deconvs = [m for m in dec.net if isinstance(m, torch.nn.ConvTranspose2d)]
        for i, m in enumerate(deconvs):
            layer(f"decoder.conv{i}", m, odec[f"conv{i}"], conv)
        # MLP heads (the discount head only where the config predicts it), actor, critics.
        for name in ("reward", "discount") if "discount" in owm.heads else ("reward",):
            self._mlp(f"heads.{name}", wm.heads[name].mlp, owm.heads[name], feat_dense, dense)
        behavior, obeh = reverie_agent.behavior, official._task_behavior
        self._mlp("actor", behavior.actor.mlp, obeh.actor, feat_dense, dense)
        self._mlp("critic", behavior.critic.mlp, obeh.critic, feat_dense, dense)
        self._mlp("slow_critic", behavior.slow_critic.mlp, obeh._target_critic, feat_dense, dense)

    def _add(self, name, param, variable, to_tf, to_torch):
        if tuple(to_tf(param.detach()).shape) != tuple(variable.shape):
            raise AssertionError(f"{name}: torch {tuple(param.shape)} does not map onto {variable.name} {tuple(variable.shape)}")
        self.pairs.append((name, param, variable, to_tf, to_torch))

    def _mlp(self, name, mlp, official_mlp, first, rest):
        linears = [m for m in mlp.net if isinstance(m, torch.nn.Linear)]
        mods = official_mlp._modules
        out = mods["out"]._modules
        keras = [mods[f"dense{i}"] for i in range(len(linears) - 1)] + [out["out"]]
        for i, (m, k) in enumerate(zip(linears, keras, strict=True)):
            kernel = first if i == 0 else rest
            if i == len(linears) - 1 and "std" in out:
                self._split_output(f"{name}.{i}", m, out["out"], out["std"], kernel)
                continue
            self._add(f"{name}.{i}.weight", m.weight, k.kernel, *kernel)
            self._add(f"{name}.{i}.bias", m.bias, k.bias, lambda b: b, lambda b: b)

    def _split_output(self, name, linear, mean_layer, std_layer, kernel):
        """A normal-type output (the continuous actor): Reverie's one layer ``[2·A, in]`` is the
        official ``out`` (its first A rows, the mean) and ``std`` (the last A rows) layers."""
        size = linear.out_features // 2

        def no_gradient(_):
            raise NotImplementedError(f"{name}: the gradient of half a layer has no Reverie layout")

        for rows, layer, half in ((slice(None, size), mean_layer, "mean"), (slice(size, None), std_layer, "std")):
            self._add(f"{name}.weight[{half}]", linear.weight, layer.kernel,
                      lambda w, rows=rows: kernel[0](w[rows]), no_gradient)
            self._add(f"{name}.bias[{half}]", linear.bias, layer.bias, lambda b, rows=rows: b[rows], no_gradient)

    def copy_to_official(self) -> None:
        for _, param, variable, to_tf, _ in self.pairs:
            variable.assign(to_tf(param.detach()).contiguous().numpy())

    def select(self, prefix: str) -> list[tuple[str, torch.nn.Parameter, tf.Variable, Callable]]:
        return [(n, p, v, back) for n, p, v, _, back in self.pairs if n.startswith(prefix)]

    def torch_layout(self, name: str, grad: tf.Tensor) -> torch.Tensor:
        """An official gradient (Keras layout) in the layout of Reverie's parameter ``name``."""
        for n, _, _, _, back in self.pairs:
            if n == name:
                return back(torch.from_numpy(np.asarray(grad)))
        raise KeyError(name)


# --------------------------------------------------------------------------- sampling


class Draws:
    """The categorical draws Reverie made, replayed to the official side.

    ``record()`` wraps Reverie's ``OneHotDist.sample``: each call's one-hot draw is kept in
    call order. ``replay(order)`` makes the official ``OneHotDist`` sample those one-hots
    (its straight-through ``sample + probs − stop_grad(probs)`` is kept, only the draw is
    injected); ``order`` lists, per official call, the index of the recorded draw it gets.
    The shape of every draw is checked, and every listed draw must be taken.
    """

    def __init__(self):
        self.recorded: list[torch.Tensor] = []

    @contextmanager
    def record(self):
        from reverie.nn import distributions

        original = distributions.OneHotDist.sample
        recorded = self.recorded

        def sample(dist):
            value = original(dist)
            recorded.append(value.detach().round().clone())
            return value

        distributions.OneHotDist.sample = sample
        try:
            yield self
        finally:
            distributions.OneHotDist.sample = original

    @contextmanager
    def replay(self, order: list[int] | None = None):
        order = list(range(len(self.recorded))) if order is None else list(order)
        queue = [self.recorded[i] for i in order]
        original = common.OneHotDist._sample_n

        def _sample_n(dist, n, seed=None):
            if not queue:
                raise AssertionError("the official code drew more categorical samples than Reverie recorded")
            value = queue.pop(0)
            shape = [n, *dist.logits_parameter().shape]
            if [1, *value.shape] != shape:
                raise AssertionError(f"injected draw {tuple(value.shape)} does not fit the official call {shape}")
            return tf.cast(tf.constant(value.numpy()[None]), dist.dtype)

        common.OneHotDist._sample_n = _sample_n
        try:
            yield self
        finally:
            common.OneHotDist._sample_n = original
        if queue:
            raise AssertionError(f"the official code took {len(order) - len(queue)} of {len(order)} injected draws")


# --------------------------------------------------------------------------- both sides


class Pair:
    """Reverie's ``Agent`` and the official ``Agent`` with the same weights (Reverie's copied over).

    ``presets``/``overrides``: Reverie's config; ``official``: the official config
    (``official_preset`` + ``official_updates``). Networks at the given configs' sizes (the atari
    presets: 64×64×1 images, 18 actions, deter = hidden = 600, 32×32 latents, 4×400 MLPs).
    ``image_shape`` and ``act_space`` (gymnasium ``Discrete`` or ``Box``; default 18 actions)
    are both sides' spaces: e.g. ``dmc`` against ``dmc_vision`` with 64×64×3 and ``Box([d])``.
    """

    def __init__(self, presets: str = "atari", overrides: tuple[str, ...] = (), official_updates: dict | None = None,
                 seed: int = 0, official_preset: str = "atari", image_shape: tuple[int, ...] = (64, 64, 1),
                 act_space=None):
        import gymnasium

        from reverie.agent import Agent
        from reverie.config import load_config

        torch.manual_seed(seed)
        tf.random.set_seed(seed)
        act_space = gymnasium.spaces.Discrete(NUM_ACTIONS) if act_space is None else act_space
        self.config = load_config(presets, overrides=["device=cpu", *overrides])
        obs_space = {"image": gymnasium.spaces.Box(0, 255, image_shape, np.uint8)}
        self.reverie = Agent(self.config, obs_space, act_space)
        self.official_config = official_config(official_preset, **(official_updates or {}))
        self.official = build_official(self.official_config, image_shape, act_space)
        create_variables(self.official, synthetic_batch(2, 3, seed, image_shape[-1], act_space))
        self.weights = WeightMap(self.reverie, self.official)
        self.weights.copy_to_official()

    @property
    def wm(self):
        return self.reverie.world_model

    @property
    def owm(self):
        return self.official.wm


def synthetic_batch(batch: int, length: int, seed: int, channels: int = 1, act_space=None) -> dict[str, np.ndarray]:
    """A batch ``[B, L, ...]`` from Reverie's real ``Replay``: synthetic Atari-like episodes
    (moving blobs on 64×64×``channels`` frames, one-hot actions, rewards in {−1, 0, 0.5, 1}) of 3
    to 2·L steps, so that sequences cross episode starts (``is_first`` inside them) and end on
    terminal and truncated steps. No env is needed on the official side. ``act_space``
    (gymnasium; default ``Discrete(18)``): a ``Box`` gives uniform continuous actions."""
    import tempfile

    import gymnasium

    from reverie.replay.episodes import Replay

    continuous = isinstance(act_space, gymnasium.spaces.Box)
    actions = int(act_space.n) if isinstance(act_space, gymnasium.spaces.Discrete) else NUM_ACTIONS
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:64]
    with tempfile.TemporaryDirectory() as directory:
        replay = Replay(directory, capacity=10**6, seed=seed)
        while replay.num_steps < 4 * batch * length:
            steps = int(rng.integers(3, 2 * length))
            terminal = bool(rng.random() < 0.5)
            cy, cx, vy, vx = rng.uniform(10, 54, 2).tolist() + rng.uniform(-3, 3, 2).tolist()
            for t in range(steps):
                blob = 200 * np.exp(-((yy - cy - vy * t) ** 2 + (xx - cx - vx * t) ** 2) / 40.0)
                # One channel: the same numbers as (blob + noise + 30)[..., None] drawn as [64, 64].
                noise = rng.normal(0, 8, (*blob.shape, channels))
                image = np.clip(blob[..., None] + noise + 30, 0, 255).astype(np.uint8)
                if continuous:
                    action = (rng.uniform(-1, 1, act_space.shape) if t else np.zeros(act_space.shape)).astype(np.float32)
                else:
                    action = np.zeros(actions, np.float32)
                    if t:
                        action[rng.integers(actions)] = 1.0
                last = t == steps - 1
                replay.add({
                    "image": image, "action": action,
                    "reward": np.float32(rng.choice([0.0, 0.0, 1.0, -1.0, 0.5]) if t else 0.0),
                    "is_first": t == 0, "is_last": last, "is_terminal": last and terminal,
                })
        return replay.sample(batch, length)


def gradient_pairs(pair: Pair, prefixes: tuple[str, ...], official_loss: Callable[[], tf.Tensor]):
    """``[(name, Reverie .grad, official gradient in Reverie's layout)]`` for every parameter
    under ``prefixes``; Reverie's ``.grad`` must already hold its gradient (None = zero)."""
    selected = [item for prefix in prefixes for item in pair.weights.select(prefix)]
    if not selected:
        raise AssertionError(f"no parameters under {prefixes}")
    with tf.GradientTape() as tape:
        loss = official_loss()
    grads = tape.gradient(loss, [v for _, _, v, _ in selected], unconnected_gradients=tf.UnconnectedGradients.ZERO)
    out = []
    for (name, param, _, back), grad in zip(selected, grads, strict=True):
        mine = param.grad if param.grad is not None else torch.zeros_like(param)
        out.append((name, mine, back(torch.from_numpy(grad.numpy()))))
    return out


def zero_grads(*modules: torch.nn.Module) -> None:
    for module in modules:
        for p in module.parameters():
            p.grad = None


def feat_pair(deter: np.ndarray, stoch: np.ndarray) -> tuple[torch.Tensor, tf.Tensor]:
    """The same features in both layouts: Reverie ``[deter | stoch]``, official ``[stoch | deter]``;
    ``stoch`` ``[..., stoch, classes]``."""
    flat = stoch.reshape(*stoch.shape[:-2], -1)
    return (torch.from_numpy(np.concatenate([deter, flat], -1)),
            tf.constant(np.concatenate([flat, deter], -1)))


def random_state(rng: np.random.Generator, n: int, deter: int = 600, stoch: int = 32, classes: int = 32):
    """A plausible RSSM state as numpy: deter in (−1, 1), one-hot stoch, logits."""
    logits = rng.normal(0, 1.5, (n, stoch, classes)).astype(np.float32)
    index = rng.integers(classes, size=(n, stoch))
    one_hot = np.eye(classes, dtype=np.float32)[index]
    return {"deter": np.tanh(rng.normal(0, 1, (n, deter))).astype(np.float32), "stoch": one_hot, "logits": logits}


def to_official_state(state: dict[str, np.ndarray]) -> dict[str, tf.Tensor]:
    return {("logit" if k == "logits" else k): tf.constant(v) for k, v in state.items()}


def to_reverie_state(state: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in state.items()}
