"""Kill safety: a process writing episodes is SIGKILLed at arbitrary points; reopening the
replay finds no corrupt or partial file and loses at most the unflushed tail."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from reverie.replay import Replay

EPISODE, CHUNK = 50, 8
WRITER = textwrap.dedent(f"""
    import sys
    import numpy as np
    from reverie.replay import Replay

    def make_step(i):
        t = i % {EPISODE}
        image = np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8)  # slow to compress
        return {{"image": image, "action": np.full(2, i, np.float32), "reward": float(i),
                "is_first": t == 0, "is_last": t == {EPISODE} - 1, "is_terminal": False}}

    replay = Replay(sys.argv[1], capacity=10**6, chunk={CHUNK})
    for i in range(10**6):
        replay.add(make_step(i))
        print(i + 1, flush=True)
""")


def on_disk_after(adds: int) -> int:
    """Steps that must be on disk once ``adds`` steps were added: closed episodes plus full chunks."""
    return adds // EPISODE * EPISODE + adds % EPISODE // CHUNK * CHUNK


@pytest.mark.parametrize("kill_after", [30, 157, 420])
def test_sigkill_mid_writing_loses_only_the_unflushed_tail(tmp_path, kill_after):
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    adds = 0
    while adds < kill_after:
        adds = int(child.stdout.readline())
    child.send_signal(signal.SIGKILL)
    child.wait()

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a corrupt file would warn
        replay = Replay.load(tmp_path, capacity=10**6, chunk=CHUNK)
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob("*.corrupt"))
    loaded = replay.num_steps
    assert loaded >= on_disk_after(adds) and loaded == on_disk_after(loaded) and replay.step == loaded
    batch = replay.sample(64, 10)
    rewards = batch["reward"].astype(int)
    np.testing.assert_array_equal(rewards, (rewards[:, :1] + np.arange(10)) % loaded)  # contiguous, nothing lost
    for row, image in zip(rewards[:4, 0], batch["image"][:4, 0]):  # content intact
        np.testing.assert_array_equal(image, np.random.default_rng(row).integers(0, 256, (64, 64, 3), dtype=np.uint8))

    # The episode running at the kill is reopened and takes the next steps.
    running = replay.state_dict()["running"]
    assert (running is None) == (loaded % EPISODE == 0)
    replay.add({key: value[0, 0] for key, value in replay.sample(1, 1).items()} | {"is_first": running is None})
    assert replay.num_steps == loaded + 1
