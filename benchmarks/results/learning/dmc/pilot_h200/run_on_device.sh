#!/bin/bash
# DMC pilots of issue #35 on the device: dmc,dmc_small, 2 tasks x 3 seeds at once, policy and
# updates on the GPU, MuJoCo rendering through EGL. Runs stop at LIMIT seconds; their metrics come back.
# .dev/ (carried, not in git): src/ of commit 33a0fba (git archive), whl/ (cp312 wheels of gymnasium 1.4.0,
# farama-notifications, dm-control 1.0.50 without its locomotion/dog assets, mujoco 3.17.0, dm-env, dm-tree,
# glfw, pyopengl), gl/ (Debian's libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2). Ran as LIMIT=470 bash .dev/dmc.sh
set -u
LIMIT=${LIMIT:-480}
for f in .dev/gl/*.deb; do dpkg -x $f /; done; ldconfig
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .dev/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:.dev/src MUJOCO_GL=egl PYTHONUNBUFFERED=1
probe='import dm_control.suite as s; e = s.load("cartpole", "swingup"); e.reset(); print("render ok", e.physics.render(64, 64, camera_id=0).mean())'
python3 -c "$probe" 2>/tmp/egl.err || { echo "EGL failed once:"; tail -3 /tmp/egl.err;
  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json;
  python3 -c "$probe" || exit 2; }
nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv,noheader
lscpu | grep "Model name"
mkdir -p /tmp/runs
start=$(date +%s)
for task in cartpole_swingup walker_walk; do for seed in 0 1 2; do
  timeout -s TERM $LIMIT python3 -m reverie train --task dmc_$task --preset dmc,dmc_small --seed $seed \
    --set device=cuda --logdir /tmp/runs/dmc_$task/$seed > /tmp/runs/dmc_$task-$seed.log 2>&1 &
done; done
while [ -n "$(jobs -r)" ]; do
  sleep 60
  echo "--- $(( $(date +%s) - start )) s, GPU $(nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader)"
  for f in /tmp/runs/*.log; do echo "$(basename $f): $(tr '\r' '\n' < $f | grep '^step' | tail -1)"; done
done
wait
for f in /tmp/runs/*.log; do echo "== $f"; tail -4 $f; done
tar czf $OUT/dmc_runs.tar.gz -C /tmp/runs --exclude=replay --exclude=checkpoints --exclude=videos --exclude='events.*' .
ls -la $OUT
