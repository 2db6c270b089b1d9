#!/bin/bash
# Device checks for issue #32 (and the first CUDA run of Reverie): one script, each step time-boxed.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 MUJOCO_GL=egl
nvidia-smi -L; nproc; python3 -c "import torch, sys; print(sys.version, torch.__version__, torch.cuda.get_device_name())"
R="python3 -m reverie"
step() { echo "=== $1"; shift; local t0=$SECONDS; timeout 150 "$@" > $OUT/step.log 2>&1; local rc=$?; tail -4 $OUT/step.log; echo "rc=$rc secs=$((SECONDS - t0))"; }
C="--set run.prefill=200 --set run.log_every=100 --set run.eval_every=300 --set run.checkpoint_every=300 --set run.pretrain=2"
step "cartpole cuda fp32 600 steps" $R train --task gym_CartPole-v1 --preset gym,debug --set device=cuda $C --steps 600 --logdir /tmp/c1
step "cartpole cuda fp32 resume to 900" $R train --logdir /tmp/c1 --steps 900
step "cartpole cuda bf16 2 envs in workers 600 steps" $R train --task gym_CartPole-v1 --preset gym,debug --set device=cuda --set precision=bf16 --set run.envs=2 --set env.parallel=process $C --steps 600 --logdir /tmp/c2
step "minatar cuda grid encoder 600 steps" $R train --task minatar_breakout --preset minatar,debug --set device=cuda --set world_model.encoder.kind=grid --set world_model.decoder.kind=grid $C --steps 600 --logdir /tmp/c3
step "atari cuda 4 envs 600 steps" $R train --task atari_pong --preset atari,debug --set device=cuda --set run.envs=4 $C --steps 600 --logdir /tmp/c4
python3 - <<'PY' > $OUT/cuda_runs.txt 2>&1
import json, pathlib
for d in ["/tmp/c1", "/tmp/c2", "/tmp/c3", "/tmp/c4"]:
    p = pathlib.Path(d, "status.json")
    s = json.loads(p.read_text()) if p.exists() else {}
    lines = [json.loads(l) for l in pathlib.Path(d, "metrics.jsonl").read_text().splitlines()] if pathlib.Path(d, "metrics.jsonl").exists() else []
    losses = [l.get("train/model_loss") for l in lines if "train/model_loss" in l]
    print(d, s.get("state"), s.get("step"), "model_loss", losses[:1], losses[-1:], "eval", [l["eval/return"] for l in lines if "eval/return" in l])
PY
cat $OUT/cuda_runs.txt
for p in fp32 bf16; do for n in 1 16; do
  step "bench atari cuda $p envs=$n" $R bench --preset atari --device cuda --precision $p --updates 10 --env-steps 300 --envs $n --json $OUT/bench_cuda_${p}_n$n.json
done; done
echo "=== parallel envs atari_pong prefill, policy on the GPU, 16 cores"
timeout 200 python3 benchmarks/parallel_envs.py --tasks atari_pong --phases prefill --envs 1,2,4,8 --out $OUT/parallel_envs_h200.json
