"""The pure parts of ``benchmarks.learning_parity`` (no TensorFlow needed): the one table
that builds both configs, the env adapter the official loop reads, the curve statistics on
hand-computed inputs, and the one-line refusals of bad input. The two real loops run in
``tests/parity/test_learning_parity_smoke.py`` (``make parity``)."""

import json

import numpy as np
import pytest

from benchmarks import learning_parity as lp
from reverie.cli import build_parser, resolve_train_config
from reverie.config import get_value
from reverie.envs import make_env

# --------------------------------------------------------------------------- the table


@pytest.mark.parametrize("task", list(lp.TASKS))
def test_every_reverie_key_is_mapped_or_says_why_not(task):
    config, _ = lp.resolve(task, 0, lp.TASKS[task].steps, 1, [])
    assert lp.unaccounted(config) == []


def test_a_new_reverie_key_is_caught(monkeypatch):
    config, _ = lp.resolve("gym_CartPole-v1", 0, 1000, 1, [])
    monkeypatch.delitem(lp.UNMAPPED, "replay.chunk")
    assert lp.unaccounted(config) == ["replay.chunk"]


@pytest.mark.parametrize("task", list(lp.TASKS))
def test_the_reverie_command_resolves_to_the_config_the_official_side_mirrors(task, tmp_path):
    # The config `reverie train` builds from the harness's own command line (the real CLI's
    # resolution) is the one `resolve` hands to MAPPING for the official side.
    study = lp.Study(tasks=[task], seeds={task: [3]}, steps={task: 4000}, workdir=tmp_path, out=tmp_path / "out")
    argv = lp.command(study, task, "reverie", 3)[1:]
    config, _ = resolve_train_config(build_parser().parse_args(argv))
    mirrored, _ = lp.resolve(task, 3, 4000, 1, [])
    config.logdir = mirrored.logdir
    assert config.to_dict() == mirrored.to_dict()


def test_cartpole_official_config_follows_the_preset():
    config, official = lp.resolve("gym_CartPole-v1", 0, 30_000, 1, [])
    assert get_value(config, "run.pretrain") == 100 and official["pretrain"] == 99  # + the building update
    assert (official["replay.ongoing"], official["replay.minlen"], official["replay.maxlen"],
            official["dataset.length"], official["dataset.batch"]) == (False, 32, 32, 32, 16)
    assert config.replay.minlen == 32 and config.replay.ongoing is False
    assert official["replay.prioritize_ends"] is True
    assert (official["rssm.deter"], official["rssm.hidden"], official["rssm.stoch"], official["rssm.discrete"]) \
        == (128, 128, 16, 16)
    assert official["encoder.mlp_layers"] == official["decoder.mlp_layers"] == [128, 128]
    assert (official["actor_grad"], official["actor.dist"], official["actor_ent"]) == ("reinforce", "auto", 1e-3)
    assert (official["kl.free"], official["loss_scales.kl"], official["clip_rewards"]) == (1.0, 0.1, "identity")
    assert (official["precision"], official["jit"], official["time_limit"]) == (32, True, 0)
    assert official["eval_every"] == config.run.checkpoint_every == 2750  # 27,500 post-prefill steps / 10
    assert config.run.eval_every == 0 and config.threads == 1


def test_pendulum_is_continuous_on_both_sides():
    config, official = lp.resolve("gym_Pendulum-v1", 0, 20_000, 1, [])
    assert (official["actor_grad"], official["actor.dist"], official["actor_ent"]) == ("dynamics", "trunc_normal", 1e-4)
    assert official["pred_discount"] is False and official["grad_heads"] == ["decoder", "reward"]
    assert official["replay.prioritize_ends"] is False and config.replay.clip_start is False


def test_breakout_uses_the_minatar_preset_with_a_normal_decoder():
    config, official = lp.resolve("minatar_breakout", 1, 100_000, 1, [])
    assert config.world_model.decoder.vector_dist == "normal"
    assert (official["train_every"], official["dataset.length"], official["replay.minlen"]) == (8, 16, 16)
    assert official["expl_noise"] == config.behavior.expl_noise == 0.1  # the preset's ε on both sides
    assert (official["actor_opt.lr"], official["critic_opt.lr"], official["actor_ent"]) == (1e-4, 2e-4, 1e-2)


@pytest.mark.parametrize(("sets", "names"), [
    (["replay.prioritize_ends=false"], "replay.clip_start"),  # Reverie's paper rule has no official twin
    (["replay.prioritize_ends=false", "replay.clip_start=false", "replay.cross_episodes=true"], "replay.cross_episodes"),
    (["world_model.decoder.vector_dist=bernoulli"], "vector_dist"),
    (["behavior.entropy=linear(1e-3,1e-4,1000)"], "behavior.entropy"),
    (["run.pretrain=0"], "run.pretrain"),
])
def test_a_setting_the_official_code_cannot_express_is_refused(sets, names):
    with pytest.raises(lp.MappingError, match=names):
        lp.resolve("gym_CartPole-v1", 0, 1000, 1, sets)


def test_reinforce_mix_between_the_ends_maps_to_both():
    assert lp.official_actor_grad(0.25) == ("both", 0.75)  # official mix weighs the dynamics term


@pytest.mark.parametrize(("steps", "prefill", "every"), [(30_000, 2500, 2750), (100_000, 5000, 5000), (400, 100, 30)])
def test_the_checkpoint_interval_divides_the_post_prefill_steps(steps, prefill, every):
    assert lp.save_interval(steps, prefill) == every and (steps - prefill) % every == 0


# --------------------------------------------------------------------------- the env adapter


def test_old_gym_adapter_keeps_truncation_apart_from_termination():
    config, _ = lp.resolve("gym_Pendulum-v1", 0, 1000, 1, [])
    env = lp.OldGymEnv(make_env(config, "train"))
    assert list(env.observation_space.spaces) == ["vector"]
    obs, steps, done = env.reset(), 0, False
    while not done:
        obs, reward, done, info = env.step(np.zeros(1, np.float32))
        steps += 1
    assert steps == 200 and info == {"is_terminal": False}  # Pendulum's TimeLimit: a truncation
    assert obs["vector"].shape == (3,) and obs["vector"].dtype == np.float32


def test_old_gym_adapter_reports_a_terminal_step():
    config, _ = lp.resolve("gym_CartPole-v1", 0, 1000, 1, [])
    env = lp.OldGymEnv(make_env(config, "train"))
    env.reset()
    done, info = False, {}
    while not done:
        _, _, done, info = env.step(np.int64(1))  # the index the official OneHotAction passes
    assert info == {"is_terminal": True}


# --------------------------------------------------------------------------- statistics


def test_bin_curve_means_each_stretch_and_interpolates_the_empty_ones():
    points = np.array([[10, 1.0], [20, 3.0], [70, 5.0], [100, 9.0]])
    centres, curve = lp.bin_curve(points, 100, bins=4)
    np.testing.assert_allclose(centres, [12.5, 37.5, 62.5, 87.5])
    # bins (0,25]: mean 2; (25,50]: empty, between 2 and 5; (50,75]: 5; (75,100]: 9
    np.testing.assert_allclose(curve, [2.0, 3.5, 5.0, 9.0])
    assert lp.area(curve) == pytest.approx(4.875)
    assert lp.bin_curve(np.array([[150, 1.0]]), 100, bins=4) is None  # nothing up to the steps


def test_final_score_is_the_mean_of_the_last_tenth():
    points = np.array([[50, 0.0], [89, 100.0], [91, 4.0], [100, 6.0], [120, 1000.0]])
    assert lp.final_score(points, 100) == 5.0
    assert lp.final_score(points[:2], 100) is None


def test_bootstrap_ci_on_known_inputs():
    # Reverie's resampled mean is 0, 5 or 10 with probabilities 1/4, 1/2, 1/4: the 2.5 and 97.5
    # percentiles are its ends; the official side has one seed.
    assert lp.bootstrap_diff_ci([0.0], [0.0, 10.0]) == [0.0, 10.0]
    assert lp.bootstrap_diff_ci([1.0, 1.0], [4.0, 4.0, 4.0]) == [3.0, 3.0]
    assert lp.bootstrap_diff_ci([1.0, 2.0, 3.0], [2.0, 3.0, 4.0]) == lp.bootstrap_diff_ci([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])
    low, high = lp.bootstrap_diff_ci([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])
    assert -2.0 <= low < 1.0 < high <= 3.0
    assert lp.bootstrap_diff_ci([], [1.0]) is None


def test_tables_show_each_task_to_about_three_digits():
    assert lp.decimals([59.7, 131.6]) == lp.decimals([-916.1, None]) == lp.decimals([4321.0]) == 1
    assert lp.decimals([0.366, 0.371]) == 3  # Breakout: one decimal would print 0.4 ± 0.0 for both sides
    assert lp.fmt_mean_std([0.34, 0.38], lp.decimals([0.34, 0.38])) == "0.360 ± 0.028"


def test_seconds_per_1k_counts_within_sittings_after_prefill():
    points = [(50, 0.0, 1), (150, 10.0, 1), (250, 20.0, 1),  # sitting 1: 10 s per 100 steps after prefill
              (240, 500.0, 2), (440, 540.0, 2)]  # a resumed sitting: its start-up gap is not counted
    assert lp.seconds_per_1k(points, prefill=100, steps=1000) == pytest.approx(1000 * 50 / 300)
    assert lp.seconds_per_1k(points[:1], prefill=100, steps=1000) is None


def test_run_state_tells_crashed_from_stopped(tmp_path):
    logdir = tmp_path / "run"
    assert lp.run_state("official", logdir, 100) == "missing"
    logdir.mkdir()
    for code, state in ((1, "crashed"), (-9, "crashed"), (-15, "running or stopped")):
        (logdir / "harness.json").write_text(json.dumps({"returncode": code}))
        assert lp.run_state("official", logdir, 100) == state
    (logdir / "done.json").write_text(json.dumps({"steps": 100}))
    assert lp.run_state("official", logdir, 100) == "finished"


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("argv", "says"), [
    (["run", "--seeds", "0,x"], "--seeds '0,x' does not parse"),
    (["run", "--seeds", "1,1"], "repeats a seed"),
    (["run", "--tasks", "gym_Pong"], "unknown task gym_Pong"),
    (["run", "--tasks", "gym_CartPole-v1", "--official-python", "no/such/python"], "make .venv-parity/.installed"),
])
def test_bad_input_is_one_line_and_exit_code_2(argv, says, capsys):
    assert lp.main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1 and "Traceback" not in err


def test_each_task_keeps_its_own_seeds_from_run_to_report(tmp_path):
    # Breakout's default is 5 seeds, the others 3; report reads each task's from its plan, so a
    # study with both never reports a task's missing seeds as unfinished runs.
    args = lp.parser().parse_args(["run", "--workdir", str(tmp_path)])
    study = lp.study_from(args)
    assert study.seeds == {"gym_CartPole-v1": [0, 1, 2], "gym_Pendulum-v1": [0, 1, 2],
                           "minatar_breakout": [0, 1, 2, 3, 4]}
    lp.write_plan(study)
    report = lp.parser().parse_args(["report", "--workdir", str(tmp_path), "--tasks", "gym_CartPole-v1,minatar_breakout"])
    assert lp.with_plan(lp.study_from(report), report).seeds == {"gym_CartPole-v1": [0, 1, 2],
                                                                 "minatar_breakout": [0, 1, 2, 3, 4]}
    one = lp.parser().parse_args(["run", "--seeds", "7", "--tasks", "gym_CartPole-v1,minatar_breakout"])
    assert lp.study_from(one).seeds == {"gym_CartPole-v1": [7], "minatar_breakout": [7]}


def test_seed_list_parses():
    assert lp.parse_seeds("0, 1,2") == [0, 1, 2]
