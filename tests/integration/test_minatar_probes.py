"""The MinAtar diagnostics of issue #17 (``benchmarks.diagnostics.minatar_heads``,
``minatar_reward_probe``, ``minatar_readout``) on a run that ``reverie train`` really produced: the
held-out steps are the replay's newest, in order, each sequence from the zero state; the
training copy lacks exactly them; and neither tool changes the run directory."""

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("minatar")  # the optional package; the project's own tools below must import
from benchmarks.diagnostics import (  # noqa: E402
    _common,
    discount_horizon,
    minatar_heads,
    minatar_readout,
    minatar_reward_probe,
)
from reverie.replay import Replay  # noqa: E402

TASK = ["--task", "minatar_breakout", "--preset", "minatar,debug", "--set", "device=cpu",
        "--set", "run.prefill=100", "--set", "run.log_every=100", "--set", "run.eval_every=1000",
        "--set", "run.checkpoint_every=1000", "--set", "run.pretrain=2", "--set", "env.time_limit=120"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    logdir = tmp_path_factory.mktemp("probe") / "run"
    result = subprocess.run([sys.executable, "-m", "reverie", "train", *TASK, "--logdir", str(logdir),
                             "--steps", "400"], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert result.returncode == 0, result.stderr
    return logdir


def snapshot(logdir: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(logdir)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(logdir.rglob("*")) if p.is_file()}


def test_newest_steps_are_the_replay_tail_in_order(run):
    replay = Replay.load(run / "replay", 10**9)  # read-only here: the run finished cleanly
    everything = {key: np.concatenate([e.data[key][: e.length] for e in replay._store.episodes])
                  for key in ("reward", "vector", "is_first")}
    batch, starts = _common.newest_steps(run, 250, 50)
    assert batch["vector"].shape[:2] == (5, 50) and batch["is_first"][:, 0].all()
    np.testing.assert_array_equal(batch["vector"].reshape(250, -1), everything["vector"][-250:])
    np.testing.assert_array_equal(batch["reward"].ravel(), everything["reward"][-250:])
    assert starts == int(everything["is_first"][-250:].sum()) >= 2  # 120-step episodes: several starts
    stored = len(everything["reward"])
    whole, _ = _common.newest_steps(run, 10**6, None)  # one sequence: all there is, not an error
    np.testing.assert_array_equal(whole["reward"], everything["reward"][None])
    assert _common.newest_steps(run, stored - 7, None)[0]["vector"].shape[:2] == (1, stored - 7)


def test_probe_trains_on_the_replay_without_its_held_out_tail_and_leaves_the_run_alone(run, tmp_path):
    before = snapshot(run)
    total = Replay.load(run / "replay", 10**9).step
    train_dir = _common.training_copy(run, 150, tmp_path)
    assert Replay.load(train_dir, 10**9).step == total - 150
    held, _ = _common.newest_steps(run, 150, 50)
    row, prior = minatar_reward_probe.probe(run, "world_model.loss_scales.reward=100", True, 2, held, 0, train_dir)
    assert prior == []  # no --prior: no second table
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:4] + cells[5:6] == ["fresh", "world_model.loss_scales.reward=100", "2", "150"] and len(cells) == 13
    assert minatar_heads.run_row(run, 250, 50).startswith(f"| {run} | 400 |")
    assert snapshot(run) == before
    with pytest.raises(SystemExit, match="not more than --holdout"):
        _common.training_copy(run, total, tmp_path / "again")


def test_probe_reads_the_prior_before_and_after_its_updates(run, tmp_path):
    train_dir = _common.training_copy(run, 150, tmp_path)
    held, _ = _common.newest_steps(run, 150, 50)
    _, prior = minatar_reward_probe.probe(run, "", False, 3, held, 0, train_dir, prior=[1], samples=2)
    name = f"{run}, as run, checkpoint 400"
    assert [row.split(" | ")[:2] for row in prior] == [
        [f"| {name}, +0 updates", "posterior"], [f"| {name}, +0 updates", "1-step prior"],
        [f"| {name}, +3 updates", "posterior"], [f"| {name}, +3 updates", "1-step prior"]]
    agent, _ = _common.load_agent(run)
    torch.manual_seed(0)  # the checkpoint's model, read as the probe reads it first
    untrained = minatar_heads.prior_rows(agent, held, [1], 2, f"{name}, +0 updates")
    assert prior[:2] == untrained
    assert [row.split(" | ")[3:] for row in prior[:2]] != [row.split(" | ")[3:] for row in prior[2:]]


def test_probe_variants_are_parsed_as_the_cli_parses_overrides():
    assert minatar_reward_probe.parse_variant("world_model.loss_scales.reward=100, behavior.entropy=0.001") == {
        "world_model.loss_scales.reward": 100, "behavior.entropy": 0.001}
    assert minatar_reward_probe.parse_variant("") == {}


def test_readout_inputs_pair_each_grid_with_the_one_before_it_and_the_action_between(run):
    data, reward, step = minatar_readout.inputs(run, 250, 50)
    batch, _ = _common.newest_steps(run, 250, 50)
    grid = batch["vector"].reshape(250, -1)
    width, actions = grid.shape[1], batch["action"].shape[-1]
    assert step == 400 and reward.shape == (250,) and data["grid"].shape == (250, width)
    transition = data["transition"]
    np.testing.assert_array_equal(transition[:, width + actions:], grid)
    np.testing.assert_array_equal(transition[:, width : width + actions], batch["action"].reshape(250, -1))
    first = batch["is_first"].reshape(-1)
    np.testing.assert_array_equal(transition[~first, :width], grid[np.flatnonzero(~first) - 1])
    assert not transition[first, :width].any()  # nothing before a sequence's first step
    assert data["features"].shape[0] == 250
    # The pair is the step before's features beside this step's, zero before a sequence starts.
    pair, feat_width = data["features_pair"], data["features"].shape[1]
    np.testing.assert_array_equal(pair[:, feat_width:], data["features"])
    np.testing.assert_array_equal(pair[~first, :feat_width], data["features"][np.flatnonzero(~first) - 1])
    assert not pair[first, :feat_width].any()
    # The mode path and the posterior's probabilities share h's width with the sampled
    # features; the probabilities of each latent sum to 1, the mode is one-hot.
    feat, mode, probs = data["features"], data["features_mode"], data["posterior_probs"]
    assert mode.shape == feat.shape == probs.shape
    agent, _ = _common.load_agent(run)
    deter, rssm = agent.world_model.rssm.deter, agent.world_model.rssm
    np.testing.assert_allclose(probs[:, deter:].reshape(250, rssm.stoch, rssm.classes).sum(-1), 1.0, rtol=1e-5)
    assert set(np.unique(mode[:, deter:])) <= {0.0, 1.0}
    np.testing.assert_array_equal(feat[:, :deter], probs[:, :deter])  # the same sampled path
    # What one prior step has: the frame before and the action, and h_t, which the posterior
    # shares with the prior (the prior of the same sampled path).
    np.testing.assert_array_equal(data["grid_before"], transition[:, : width + actions])
    torch.manual_seed(0)  # inputs draws the posterior's latents from this seed
    with torch.no_grad():
        prior_deter = agent.world_model.observe(batch).prior["deter"].reshape(250, deter).numpy()
    np.testing.assert_array_equal(data["deter"], prior_deter)
    only, _, _ = minatar_readout.inputs(run, 250, 50, ("grid",))
    assert list(only) == ["grid"]
    net = minatar_readout.fit_readout(data["grid"], reward, 3, 0)
    assert net(torch.as_tensor(data["grid"][:2])).shape == (2, 1)
    wide = minatar_readout.fit_readout(data["grid"], reward, 3, 0, layers=4, units=400)
    assert [m.out_features for m in wide if isinstance(m, torch.nn.Linear)] == [400, 400, 400, 400, 1]


def test_prior_predictions_start_from_each_posterior_and_skip_episode_starts(run):
    batch, _ = _common.newest_steps(run, 250, 50)
    agent, _ = _common.load_agent(run)
    with torch.no_grad():
        observed = agent.world_model.observe(batch)
        one, valid = _common.imagined_from_posterior(agent, batch, 1, observed)
        # One prior step from the posterior at j with a_{j+1} is the prior that observe
        # computed for step j + 1, wherever no episode starts in between.
        expected = observed.prior["deter"][:, 1:].reshape(-1, agent.world_model.rssm.deter)
        torch.testing.assert_close(one["deter"][valid], expected[valid])
        three, valid3 = _common.imagined_from_posterior(agent, batch, 3, observed)
        mode, _ = _common.imagined_from_posterior(agent, batch, 1, observed, draw="mode")
        torch.testing.assert_close(mode["logits"][valid], observed.prior["logits"][:, 1:].flatten(0, 1)[valid])
        assert (mode["stoch"].argmax(-1) == mode["logits"].argmax(-1)).all()  # the most likely class, no draw
    starts = batch["is_first"].astype(bool)
    assert one["deter"].shape[0] == 5 * 49 and three["deter"].shape[0] == 5 * 47
    np.testing.assert_array_equal(valid, ~starts[:, 1:].ravel())
    windows = np.stack([starts[:, 1 + i: 48 + i] for i in range(3)]).any(0)
    np.testing.assert_array_equal(valid3, ~windows.ravel())
    rows = minatar_heads.prior_rows(agent, batch, [2], 2, run)
    assert rows[0].startswith(f"| {run} | posterior | ") and rows[1].startswith(f"| {run} | 2-step prior | ")
    assert all(row.count("|") == minatar_heads.PRIOR_HEADER.count("|") for row in rows) and len(rows) == 2
    # the cells set at the rewarded steps are the replay's own, whatever the model decodes
    valid2 = ~np.stack([starts[:, 1 + i: 49 + i] for i in range(2)]).any(0).ravel()
    paid2 = (batch["reward"][:, 2:].ravel() != 0) & valid2
    assert paid2.any()
    bricks = batch["vector"][:, 2:].reshape(-1, 100, 4)[paid2][..., 3].sum(1).mean()  # one fewer than the frame before
    others = batch["vector"][:, 2:].reshape(-1, 100, 4)[~paid2 & valid2][..., 3].sum(1).mean()
    assert re.search(rf"brick [0-9.]+/[0-9.]+/{bricks:.2f} \| .*brick [0-9.]+/[0-9.]+/{others:.2f} \|$", rows[1]), rows[1]


def test_code_row_reads_the_entropy_and_agreement_of_the_latents(run):
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [50.0, 0.0, 0.0, 0.0]]])  # uniform, then sure
    torch.testing.assert_close(minatar_heads.entropy(logits), torch.tensor([[math.log(4), 0.0]]), atol=1e-6, rtol=0)
    batch, _ = _common.newest_steps(run, 250, 50)
    agent, _ = _common.load_agent(run)
    torch.manual_seed(0)
    row = minatar_heads.code_row(agent, batch, run)
    cells = row.split(" | ")
    assert row.count("|") == minatar_heads.CODE_HEADER.count("|") and cells[1].endswith(f"({math.log(16):.2f})")
    posterior, prior, agree = float(cells[1].split()[0]), float(cells[2]), float(cells[3])
    assert 0 < posterior <= math.log(16) and 0 < prior <= math.log(16) and 0 <= agree <= 1
    with torch.no_grad():
        torch.manual_seed(0)
        post = agent.world_model.observe(batch).post["logits"][:, 1:]
    valid = ~torch.as_tensor(batch["is_first"][:, 1:]).bool()
    assert f"{minatar_heads.entropy(post)[valid].mean():.2f}" == cells[1].split()[0]  # the steps after a first


def test_discount_horizon_reads_the_head_by_position_and_the_imagination_weights(run):
    agent, checkpoint = _common.load_agent(run)
    length = agent.config.replay.length  # the debug preset's L
    assert discount_horizon.buckets(16, 64) == [(0, 8), (8, 16), (16, 32), (32, 64)]
    assert discount_horizon.buckets(16, 12) == [(0, 8), (8, 12)]
    batch, _ = _common.newest_steps(run, 4 * length * 2, 4 * length)
    torch.manual_seed(0)  # the posterior draws its latents
    continuation, terminal = discount_horizon.posterior_by_position(agent, batch)
    with torch.no_grad():
        torch.manual_seed(0)
        head = agent.world_model.heads["discount"](agent.world_model.observe(batch).feat).mean.numpy()
    np.testing.assert_allclose(continuation * agent.config.behavior.discount, head, rtol=1e-5)
    np.testing.assert_array_equal(terminal, batch["is_terminal"])
    rows = discount_horizon.posterior_rows(run, checkpoint, agent, batch)
    assert len(rows) == len(discount_horizon.buckets(length, 4 * length))
    assert sum(int(row.split(" | ")[5]) for row in rows) == int(batch["is_terminal"].sum())  # every terminal counted once
    windows, _ = _common.newest_steps(run, 4 * length, length)
    torch.manual_seed(0)
    weight = discount_horizon.imagined_weights(agent, windows)
    horizon = agent.config.behavior.horizon
    assert weight.shape == (horizon + 1, 4, length) and (weight[0] == 1).all()
    assert (np.diff(weight, axis=0) <= 1e-6).all()  # a product of probabilities only falls
    np.testing.assert_allclose(weight[1], agent.config.behavior.discount * (1 - windows["is_terminal"]), rtol=1e-6)
    header, rows = discount_horizon.imagined_rows(run, agent, windows)
    assert header.count("|") == rows[0].count("|") and len(rows) == len(range(0, length, max(1, length // 8)))


def test_cell_errors_count_missed_and_spurious_cells_per_channel():
    truth = np.zeros((3, 100, 2))
    truth[:, 0, 0] = 1  # channel 0: one cell set at every step
    truth[0, 5, 1] = truth[0, 6, 1] = 1  # channel 1: two cells at step 0
    decoded = np.full_like(truth, 0.2)
    decoded[0, 0, 0], decoded[1, 0, 0], decoded[2, 0, 0] = 0.9, 0.5, 0.1  # step 2 misses channel 0's cell
    decoded[0, 5, 1], decoded[0, 50, 1] = 0.7, 0.6  # step 0: one of two found, one cell invented
    errors = minatar_heads.cell_errors(decoded.reshape(3, -1), truth.reshape(3, -1), np.array([True, True, True]))
    np.testing.assert_allclose(errors, [[1, 2 / 3], [1 / 3, 1 / 3], [0, 1 / 3]])  # set, missed, spurious
    only_first = minatar_heads.cell_errors(decoded.reshape(3, -1), truth.reshape(3, -1), np.array([True, False, False]))
    np.testing.assert_allclose(only_first, [[1, 2], [0, 1], [0, 1]])
    assert np.isnan(minatar_heads.cell_errors(decoded.reshape(3, -1), truth.reshape(3, -1), np.zeros(3, bool))).all()


def test_heads_name_each_games_channels_in_observation_order():
    from reverie.envs.minatar import channel_names
    from reverie.errors import TaskError

    assert channel_names("asterix") == ["player", "enemy", "trail", "gold"]
    assert channel_names("breakout") == ["paddle", "ball", "trail", "brick"]
    with pytest.raises(TaskError, match="unknown MinAtar game 'pong'"):
        channel_names("pong")


def test_asterix_reward_classes_match_what_the_game_does_inside():
    """Each reward of random Asterix play, classed from the frame before and the move alone,
    against the game's own entities and move timer before the step (no sticky actions)."""
    from benchmarks.diagnostics import asterix_rewards
    from reverie.envs.minatar import MinAtarEnv
    env = MinAtarEnv("asterix", seed=3, sticky_actions=0.0, full_action_space=False)
    letters = [env.env.env.action_map[a] for a in env.actions]
    rng, obs, seen = np.random.default_rng(0), env.reset(), []
    vectors, moves, rewards, firsts = [obs["vector"]], ["n"], [0.0], [True]
    for _ in range(4000):
        game, action = env.env.env, int(rng.integers(len(letters)))
        dy, dx = asterix_rewards.MOVES[letters[action]]
        y, x = min(8, max(1, game.player_y + dy)), min(9, max(0, game.player_x + dx))
        golds = [e for e in game.entities if e is not None and e[3]]
        onto = any(e[:2] == [x, y] for e in golds)
        moves_onto = game.move_timer == 0 and any([e[0] + (1 if e[2] else -1), e[1]] == [x, y] for e in golds)
        truth = "both" if onto and moves_onto else "step_onto" if onto else "gold_moves_onto" if moves_onto else "other"
        obs = env.step(action)
        grid = obs["vector"].reshape(10, 10, -1) > 0.5
        for gx, gy, right, gold in filter(None, game.entities):  # every gold's direction, edges included
            assert not gold or asterix_rewards.gold_direction(grid, gy, gx) == (1 if right else -1)
        if obs["reward"]:
            seen.append(truth)
            assert asterix_rewards.classify(vectors[-1].reshape(10, 10, -1) > 0.5, letters[action]) == truth
        vectors.append(obs["vector"]), moves.append(letters[action]), rewards.append(obs["reward"]), firsts.append(False)
        if obs["is_last"]:
            obs = env.reset()
            vectors.append(obs["vector"]), moves.append("n"), rewards.append(0.0), firsts.append(True)
    assert {"step_onto", "gold_moves_onto"} <= set(seen), seen
    counts = asterix_rewards.count_cases(np.stack(vectors), moves, np.array(rewards), np.array(firsts))
    assert counts == {case: seen.count(case) for case in asterix_rewards.CASES}
    assert asterix_rewards.player_follows(np.stack(vectors), moves, np.array(firsts)) == 1.0  # no sticky actions
    early = moves[1:] + ["n"]  # each move stored one step off: the player rarely follows it
    assert asterix_rewards.player_follows(np.stack(vectors), early, np.array(firsts)) < 0.6


def test_prior_steps_are_positive_integers_or_one_usage_line():
    import argparse
    assert _common.prior_steps("1,2,5") == [1, 2, 5]
    for bad in ("0,2", "a", "", "-1"):
        with pytest.raises(argparse.ArgumentTypeError, match="positive integers"):
            _common.prior_steps(bad)
    result = subprocess.run([sys.executable, "-m", "benchmarks.diagnostics.minatar_reward_probe", "runs/none",
                             "--prior", "x"], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].endswith("e.g. 1,2,3,5,8")
