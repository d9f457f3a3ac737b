"""``dgp-tool weights``: list, import and verify BigGAN weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dgp_toolkit.hookspecs import hookimpl


def _human_size(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


def weights_rows() -> tuple[list[dict[str, Any]], list[str]]:
    """One row per known variant and imported name, and the unreadable records' errors.

    Row keys: ``name``, ``kind`` (``embedded``, ``official``, ``imported``), ``variant``,
    ``description``, ``available``, ``path``, ``size``, ``sha256``, ``config``,
    ``how_to_get`` (``None`` when available).
    """
    from dgp_toolkit.priors import store
    from dgp_toolkit.priors.biggan.variants import (
        embedded_weights_path,
        known_variants,
        read_embedded_card,
    )

    errors: list[str] = []
    records = {r.name: r for r in store.list_records(errors)}
    rows = []
    for name, variant in known_variants().items():
        row: dict[str, Any] = {"name": name, "kind": variant.kind, "variant": name,
                               "description": variant.description, "config": variant.config}
        record = records.pop(name, None)
        if record is not None:
            row.update(_record_fields(record))
        elif variant.kind == "embedded":
            path = embedded_weights_path()
            available = path.is_file()
            card = read_embedded_card()
            sha = card.get("sha256") if isinstance(card.get("sha256"), str) else None
            if available and sha is None:
                sha = store.sha256_file(path)
            row.update(available=available, path=str(path), size=path.stat().st_size if available else None,
                       sha256=sha if available else None)
        else:
            row.update(available=False, path=None, size=None, sha256=None)
        row["how_to_get"] = None if row["available"] else variant.how_to_get()
        rows.append(row)
    for record in records.values():
        row = {"name": record.name, "kind": "imported", "variant": record.variant,
               "description": f"imported from {', '.join(Path(s['path']).name for s in record.sources)}",
               "config": record.config}
        row.update(_record_fields(record))
        row["how_to_get"] = None if row["available"] else "the stored file is gone; re-import it with --overwrite"
        rows.append(row)
    return rows, errors


def _short_hint(row: dict[str, Any]) -> str:
    from dgp_toolkit.priors.biggan.variants import ENV_EMBEDDED, get_variant

    variant = get_variant(row["name"])
    if row["kind"] == "official" and variant is not None:
        return f"dgp-tool weights import {variant.files['G_ema']} {variant.files['D']} --variant {row['name']}"
    if row["kind"] == "embedded":
        return f"not shipped in this copy: {row['path']} (or set {ENV_EMBEDDED}=FILE)"
    return str(row["how_to_get"])


def _record_fields(record: Any) -> dict[str, Any]:
    path = record.path
    return {"available": path.is_file(), "path": str(path), "size": record.size, "sha256": record.sha256,
            "imported": record.created}


@click.group("weights", context_settings={"help_option_names": ["-h", "--help"]})
def weights_group() -> None:
    """List, import and verify BigGAN weights.

    The default prior `biggan` ships with the package. The official ImageNet BigGANs that
    DGP uses (biggan-imagenet-128, biggan-imagenet-256, biggan-imagenet-256-ch64) are
    imported once from the G_ema + D .pth pairs the DGP authors distribute; they are
    converted to safetensors in the cache (DGP_TOOLKIT_HOME, else
    $XDG_CACHE_HOME/dgp-toolkit, else ~/.cache/dgp-toolkit).
    """


@weights_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (for scripts) instead of a table.")
def list_command(as_json: bool) -> None:
    """Known and imported weights: available or not, where, size, sha256.

    \b
    JSON form: a list of {"name", "kind", "variant", "description", "available",
    "path", "size", "sha256", "config", "how_to_get", ...}.
    """
    from dgp_toolkit.cli.output import echo_json, stderr_console, stdout_console

    rows, errors = weights_rows()
    if as_json:
        echo_json(rows)
    else:
        from rich.table import Table

        table = Table(title="BigGAN weights (--prior NAME)", title_justify="left")
        table.add_column("name", no_wrap=True)
        table.add_column("kind")
        table.add_column("available")
        table.add_column("size", no_wrap=True)
        table.add_column("sha256", no_wrap=True)
        table.add_column("where / how to get", overflow="fold")
        for row in rows:
            table.add_row(
                row["name"], row["kind"], "yes" if row["available"] else "no", _human_size(row["size"]),
                (row["sha256"] or "-")[:12], row["path"] if row["available"] else _short_hint(row),
                style=None if row["available"] else "dim",
            )
        console = stdout_console()
        console.print(table)
        if any(row["kind"] == "official" and not row["available"] for row in rows):
            from dgp_toolkit.priors.biggan.variants import DOWNLOAD_HINT

            console.print(f"Official weights: download the G_ema + D .pth pairs ({DOWNLOAD_HINT}) and "
                          "import them as shown, or pass --weights DIR.", markup=False, highlight=False)
    for error in errors:
        stderr_console().print(f"warning: {error}", style="yellow", markup=False)


@weights_group.command("import")
@click.argument("g_ema_file", metavar="G_EMA_FILE", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("d_file", metavar="D_FILE", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--variant", help="A known architecture: biggan-imagenet-128, biggan-imagenet-256, "
              "biggan-imagenet-256-ch64 (or biggan).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="A custom architecture: JSON with the official BigGAN-PyTorch argument names "
              "(resolution, G_ch, D_ch, dim_z, shared_dim, hier, n_classes, G_attn, D_attn, ...).")
@click.option("--as", "name", help="The name to load the weights by (default: the variant).")
@click.option("--overwrite", is_flag=True, help="Replace weights already imported under that name.")
def import_command(g_ema_file: Path, d_file: Path, variant: str | None, config_file: Path | None,
                   name: str | None, overwrite: bool) -> None:
    """Check a G_ema + D pair of BigGAN-PyTorch weights and store it in the cache.

    The files must fit the architecture exactly (a missing or extra key, or a wrong
    shape, is an error). .pth files are read with torch.load(weights_only=True) only;
    .safetensors files work too. Afterwards `--prior NAME` and
    dgp_toolkit.load_prior(NAME) load them.

    \b
    Example:
      dgp-tool weights import G_ema_128.pth D_128.pth --variant biggan-imagenet-128
    """
    from dgp_toolkit.cli.output import stderr_console
    from dgp_toolkit.priors import store

    console = stderr_console()
    record = store.import_pair(g_ema_file, d_file, variant=variant, config=config_file, name=name,
                               overwrite=overwrite, log=lambda line: console.print(line, markup=False))
    click.echo(f"imported {record.name}: {record.path} ({_human_size(record.size)}, sha256 {record.sha256[:12]})")


@weights_group.command("verify")
@click.argument("name", required=False)
def verify_command(name: str | None) -> None:
    """Re-hash imported weights (NAME, or all) against their records and check that every
    weight is finite (no NaN or infinity); exit 1 on a mismatch or a non-finite weight."""
    from dgp_toolkit.errors import DGPError
    from dgp_toolkit.priors import store

    results = store.verify(name)
    if not results:
        click.echo("no imported weights to verify")
        return
    for result in results:
        click.echo(f"{result.name}: {result.status} ({result.detail})")
    bad = [r for r in results if not r.ok]
    if bad:
        first = bad[0]
        raise DGPError(f"{len(bad)} of {len(results)} failed verification: {first.name} is {first.status} "
                       f"({first.path}): {first.detail}")


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(weights_group)
