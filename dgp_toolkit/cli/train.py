"""``dgp-tool train-prior``: train a class-conditional BigGAN prior on your own images."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import click

from dgp_toolkit.cli.output import NON_NEGATIVE, POSITIVE, SEED, FolderType, NumberType
from dgp_toolkit.hookspecs import hookimpl

CHECKPOINT_NAME = "checkpoint.pt"
PRIOR_NAME = "prior.safetensors"
HISTORY_NAME = "history.json"
SAMPLES_NAME = "samples"


@click.command("train-prior")
@click.argument("data", type=click.Path(path_type=Path))
@click.option("-o", "--out", "out_dir", type=FolderType(file_okay=False), required=True,
              help="Run folder: checkpoint.pt, samples/, prior.safetensors, history.json.")
@click.option("--iterations", type=click.IntRange(1), default=20000, show_default=True,
              help="Total generator steps of the run (a resumed run continues up to this).")
@click.option("--max-minutes", type=POSITIVE, default=None,
              help="Stop cleanly at a checkpoint after this many minutes; run again to resume.")
@click.option("--resolution", type=click.Choice(["32", "64", "128", "256"]), default="32", show_default=True)
@click.option("--g-ch", "G_ch", type=click.IntRange(8), default=32, show_default=True)
@click.option("--d-ch", "D_ch", type=click.IntRange(8), default=32, show_default=True)
@click.option("--dim-z", type=click.IntRange(1), default=128, show_default=True)
@click.option("--shared-dim", type=click.IntRange(1), default=128, show_default=True)
@click.option("--attn", default="0", show_default=True,
              help="Attention resolutions for G and D, e.g. 16 or 16_32; 0 for none.")
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--d-steps", type=click.IntRange(1), default=2, show_default=True,
              help="Discriminator steps per generator step.")
@click.option("--lr-g", type=POSITIVE, default=2e-4, show_default=True)
@click.option("--lr-d", type=POSITIVE, default=2e-4, show_default=True)
@click.option("--ema-decay", type=NumberType(0.0, inclusive=True), default=0.9999, show_default=True)
@click.option("--ema-start", type=click.IntRange(0), default=1000, show_default=True)
@click.option("--ortho", type=NON_NEGATIVE, default=1e-4, show_default=True, help="Orthogonal regularisation strength (G).")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--precision", type=click.Choice(["auto", "float32", "bf16"]), default="auto", show_default=True,
              help="auto: bf16 autocast + channels-last where the hardware does bf16 natively, else float32.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or mps.")
@click.option("--checkpoint-every", type=click.IntRange(1), default=250, show_default=True)
@click.option("--sample-every", type=click.IntRange(1), default=500, show_default=True)
@click.option("--fresh", is_flag=True, help="Start over even if the run folder holds a checkpoint.")
@click.option("--quiet", is_flag=True, help="No progress display.")
def train_prior_command(data: Path, out_dir: Path, iterations: int, max_minutes: float | None,
                        resolution: str, attn: str, fresh: bool, quiet: bool, device: str,
                        **options) -> None:
    """Train a class-conditional BigGAN prior (G EMA + D) on an image data set.

    DATA is a CIFAR-10-style .npz (jpeg, offsets, labels, classes) or a folder with one
    subfolder per class. A run folder that already holds a checkpoint is resumed with the
    checkpoint's settings (exactly: same weights as an uninterrupted run); --fresh starts
    over. At every stop the folder gets prior.safetensors, loadable as a prior.

    \b
    Example (the embedded prior's recipe, in 2.5-hour chunks):
      dgp-tool train-prior ../shared/data/cifar10/train_jpeg.npz -o runs/cifar --max-minutes 150
    """
    import torch

    from dgp_toolkit.cli.output import stderr_console
    from dgp_toolkit.errors import DGPUsageError
    from dgp_toolkit.images import write_atomic
    from dgp_toolkit.priors.biggan.datasets import load_dataset
    from dgp_toolkit.priors.biggan.train import Trainer, TrainSettings

    console = stderr_console()
    _check_run_folder(out_dir)
    ckpt_path = out_dir / CHECKPOINT_NAME
    resume = ckpt_path.exists() and not fresh
    if resume:
        try:
            saved = torch.load(ckpt_path, map_location="cpu", weights_only=True)
            settings = TrainSettings(**json.loads(saved["settings"]))
        except Exception as exc:  # noqa: BLE001
            raise DGPUsageError(f"{ckpt_path}: cannot resume from this checkpoint ({exc}); "
                                "use --fresh to start over") from None
        del saved
        settings.checkpoint_every = options["checkpoint_every"]
        settings.sample_every = options["sample_every"]
    else:
        fields = {f.name for f in dataclasses.fields(TrainSettings)}
        settings = TrainSettings(resolution=int(resolution), G_attn=attn, D_attn=attn,
                                 **{k: v for k, v in options.items() if k in fields})
        settings.validate()  # before decoding the data set (50,000 images for CIFAR-10)
    t0 = time.monotonic()
    dataset = load_dataset(data, settings.resolution)
    console.print(f"data: {len(dataset)} images, {len(dataset.class_names)} classes "
                  f"({time.monotonic() - t0:.1f} s to decode)")
    trainer = Trainer(settings, dataset, device=device)
    if resume:
        trainer.load_checkpoint(ckpt_path)
        console.print(f"resumed from {ckpt_path} at step {trainer.step}")
    console.print(f"precision: {trainer.precision}; G {sum(p.numel() for p in trainer.G.parameters()):,} "
                  f"params, D {sum(p.numel() for p in trainer.D.parameters()):,} params")
    if trainer.step >= iterations:
        console.print(f"already at step {trainer.step} >= --iterations {iterations}; exporting only")
        reason = "done"
    else:
        reason = _run(trainer, iterations, max_minutes, ckpt_path, out_dir / SAMPLES_NAME, console, quiet)
    trainer.export_prior(out_dir / PRIOR_NAME, recalibrate_batches=50)
    history = json.dumps(trainer.history).encode("utf-8")
    write_atomic(out_dir / HISTORY_NAME, lambda handle: handle.write(history), overwrite=True)
    summary = {"step": trainer.step, "iterations": iterations, "stopped": reason,
               "elapsed_s": round(trainer.elapsed, 1), "checkpoint": str(ckpt_path),
               "prior": str(out_dir / PRIOR_NAME), "precision": trainer.precision}
    click.echo(json.dumps(summary))


def _check_run_folder(out_dir: Path) -> None:
    """The run folder and the files it gets can be written (before the data set is decoded);
    nothing is created yet. Existing files are replaced: a run folder is resumed."""
    from dgp_toolkit.paths import check_output_file, check_output_folder

    check_output_folder(out_dir, "--out")
    for name in (CHECKPOINT_NAME, PRIOR_NAME, HISTORY_NAME):
        check_output_file(out_dir / name, "--out", overwrite=True)
    check_output_folder(out_dir / SAMPLES_NAME, "--out")


def _run(trainer, iterations, max_minutes, ckpt_path, samples_dir, console, quiet) -> str:
    if quiet:
        return trainer.train(iterations, max_minutes=max_minutes, checkpoint_path=ckpt_path,
                             samples_dir=samples_dir)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        task = progress.add_task("train", total=iterations, completed=trainer.step, info="")

        def on_log(row):
            info = (f"D {row['d_real'] + row['d_fake']:.3f} G {row['g']:.3f} "
                    f"{row['it_per_s']:.2f} it/s")
            progress.update(task, completed=row["step"], info=info)

        return trainer.train(iterations, max_minutes=max_minutes, checkpoint_path=ckpt_path,
                             samples_dir=samples_dir, on_log=on_log)


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(train_prior_command)
