#!/usr/bin/env bash
# One GPU chunk of prior training, prepared for a session that is lent a device machine
# (`run` of the device tool: one command of at most 10 minutes, 15 minutes of device time in
# all). It trains a wider 32-px BigGAN than the embedded one (G_ch = D_ch = 64 by default:
# 4.4 M + 4.2 M parameters against 1.25 M + 1.06 M) on CIFAR-10 for MINUTES minutes and
# brings back the exported prior, split into parts that fit the tool's 16 MiB a file.
#
# Here, before the call (the data set travels as an ignored, carried folder):
#
#     mkdir -p training/data && cp ../shared/data/cifar10/train_jpeg.npz training/data/
#
# The call (device tool; the machine has PyTorch, click, rich, pluggy and safetensors, so the
# package runs from the checkout without installing it):
#
#     run(command="bash training/gpu_chunk.sh", carry=["training/data"], timeout_s=600)
#
# Back here, reassemble and check it (training/README.md, "A wider prior on a GPU"):
#
#     cat /work/.device/.../prior.safetensors.part* > training/wide/prior.safetensors
#     sha256sum -c <(sed 's#\S*$#training/wide/prior.safetensors#' /work/.device/.../prior.sha256)
#
# On a CPU (a check of this script, not a training run):
#     OUT=/tmp/out DEVICE=cpu G_CH=8 MINUTES=0.2 DATA=../shared/data/cifar10/test_dev_jpeg.npz \
#         bash training/gpu_chunk.sh
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder whose files come back}"
G_CH=${G_CH:-64}
MINUTES=${MINUTES:-6}
DEVICE=${DEVICE:-cuda}
DATA=${DATA:-training/data/train_jpeg.npz}
RUN=${RUN:-/tmp/dgp-wide-run}
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

[ -f "$DATA" ] || { echo "no data set at $DATA (copy ../shared/data/cifar10/train_jpeg.npz there)" >&2; exit 2; }
if [ "$DEVICE" = cuda ]; then nvidia-smi -L || true; fi
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

# The embedded prior's recipe (training/README.md), wider, with batch 64; --max-minutes stops
# at a checkpoint and exports prior.safetensors (G EMA + D) either way.
set -o pipefail
"$PYTHON" -c "from dgp_toolkit.cli import main; main()" train-prior "$DATA" -o "$RUN" \
    --g-ch "$G_CH" --d-ch "$G_CH" --batch-size 64 --d-steps 2 --lr-g 2e-4 --lr-d 2e-4 \
    --ema-decay 0.999 --ema-start 1000 --iterations 200000 --max-minutes "$MINUTES" \
    --checkpoint-every 2000 --sample-every 5000 --seed 0 --device "$DEVICE" --quiet \
    2>&1 | tee "$OUT/train.log"

cp "$RUN/history.json" "$OUT/history.json"
(cd "$RUN" && sha256sum prior.safetensors) > "$OUT/prior.sha256"
split -b 15M -d "$RUN/prior.safetensors" "$OUT/prior.safetensors.part"
ls -l "$OUT"
