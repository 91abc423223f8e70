#!/usr/bin/env bash
# MNIST -> MNIST-M on one GPU: recipe C with the wider network, source-only / DANN / mean teacher / VADA x 3 seeds,
# plus VADA with recipe C's own network, all side by side, sized to about 5 minutes of training
# (benchmarks.gpu_dann_seeds). One command on a fresh GPU machine, from the repository root, with `.whl` and
# `gpu-data-mnist` carried (benchmarks/README.md says how to make both). Results go to $OUT (at most 8 files).
#
#   OUT=/tmp/out bash benchmarks/run_gpu_dann_mnistm.sh             # on the GPU machine (about 6 minutes)
#   DRY_RUN=1 OUT=/tmp/out bash benchmarks/run_gpu_dann_mnistm.sh   # tiny sizes on the CPU, to try it first
set -o pipefail
: "${OUT:?set OUT to the folder that comes back}"
DATA=${DATA:-gpu-data-mnist}
WORK=${WORK:-/tmp/gpu-dann-mnistm}
if [ -d .whl ] && [ -z "$DRY_RUN" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site:$PWD
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1
python3 -c "import torch, datasets, accelerate, transformers, pyarrow, fsspec, sklearn
print('torch', torch.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name(),
      'datasets', datasets.__version__, 'pyarrow', pyarrow.__version__, 'transformers', transformers.__version__)" \
    2>&1 | tee "$OUT/driver.log" || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$OUT/driver.log"

RECIPE_C=(--architecture improved --input_normalization per_channel --augment --aug_scale 0.9 1.1 --aug_rotation 10
          --aug_translate 0.08 --aug_channel_invert 0.5 --aug_background 0.8 --aug_thicken 0.8 --lr_schedule dann
          --learning_rate 1e-3 --batch_size 64 --adapt_bn)
SIZES=(--seeds 0 1 2 --budget_s 280 --deadline_s 430)
[ -n "$DRY_RUN" ] && SIZES=(--seeds 0 --dry_run --budget_s 280 --deadline_s 900)
rm -rf "$WORK"
timeout 500 python3 -m benchmarks.gpu_dann_seeds --source mnist --target mnistm --source_dir "$DATA/mnist5k" \
    --target_dir "$DATA/mnistm" --output_dir "$WORK" "${SIZES[@]}" \
    --group wide=source_only,dann,mean_teacher,vada:--conv_channels,64,128 --group narrow=vada: \
    -- "${RECIPE_C[@]}" 2>&1 | tee -a "$OUT/driver.log"

# what comes back: the summary, every log, metrics and figure, and the seed-0 models (3 archives under 16 MB each)
cd "$WORK" || exit 1
cp summary.md summary.json "$OUT/"
tar czf "$OUT/results.tgz" --exclude=checkpoints --exclude=model.safetensors logs figures runs calibration
pack() { local name=$1; shift; local found=(); for d in "$@"; do [ -d "$d" ] && found+=("$d"); done
         [ ${#found[@]} -gt 0 ] && tar czf "$OUT/$name" --exclude=checkpoints "${found[@]}"; }
pack models-a.tgz runs/wide/mnist-mnistm-source_only-seed0 runs/wide/mnist-mnistm-dann-seed0
pack models-b.tgz runs/wide/mnist-mnistm-mean_teacher-seed0 runs/wide/mnist-mnistm-vada-seed0
pack models-c.tgz runs/wide/mnist-mnistm-vada-seed1 runs/wide/mnist-mnistm-vada-seed2 runs/narrow/mnist-mnistm-vada-seed0
ls -la "$OUT"
