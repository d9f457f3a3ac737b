#!/usr/bin/env bash
# Rebuild every figure in docs/ with the embedded prior: the README's before/after sheet
# (docs/make_front_sheet.py) and the figures of docs/editing.md.
#   bash docs/make_figures.sh            (about 15 minutes on a 2-core CPU)
# Every editing figure is written by the dgp-tool command shown, then copied here.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
img=examples/images
q="--quiet --overwrite"

# the README's picture: per task, a photo, its observation and the restoration
python docs/make_front_sheet.py

# restoration: input, observation, each stage, result
dgp-tool restore $img/cifar_ship_800.png --degrade downsample:factor=4 --simulate --sheet -o "$out/restore" $q > /dev/null
cp "$out/restore/cifar_ship_800_sheet.png" docs/restore_sheet.png

# random jittering, saving the reconstruction so that transfer reuses it
dgp-tool jitter $img/cifar_horse_700.png --class horse --std 0.3,0.5,0.7 --count 4 \
    --save-state "$out/horse.safetensors" -o "$out/jitter" $q > /dev/null
cp "$out/jitter/cifar_horse_700_jitter_sheet.png" docs/jitter_sheet.png

# category transfer from the same reconstruction (no second optimization)
dgp-tool transfer --from-state "$out/horse.safetensors" --to all -o "$out/transfer" $q > /dev/null
cp "$out/transfer/horse_transfer_sheet.png" docs/transfer_sheet.png

# morphing between two reconstructions (frames, sheet, GIF)
dgp-tool morph $img/cifar_cat_300.png $img/cifar_dog_500.png --class cat --class dog --steps 9 \
    -o "$out/morph" $q > /dev/null
cp "$out/morph/cifar_cat_300_cifar_dog_500_morph_sheet.png" docs/morph_sheet.png
cp "$out/morph/cifar_cat_300_cifar_dog_500_morph.gif" docs/morph.gif

# plain samples of one class
dgp-tool sample --class ship --count 8 --seed 0 -o "$out/sample" $q > /dev/null
cp "$out/sample/sample_ship_seed0_sheet.png" docs/sample_sheet.png
ls -l docs/*.png docs/*.gif
