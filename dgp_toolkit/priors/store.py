"""The user's weights cache: imported BigGAN checkpoint pairs, one safetensors file per name.

Location: ``$DGP_TOOLKIT_HOME`` if set, else ``$XDG_CACHE_HOME/dgp-toolkit``, else
``~/.cache/dgp-toolkit``; weights go to its ``weights/`` folder as ``NAME.safetensors``
(keys ``G.<official key>`` and ``D.<official key>``) with a record ``NAME.json`` beside it:
the architecture (official BigGAN-PyTorch argument names), the sha256 and size of the
stored file and of both source files, their paths, the date, the variant and the toolkit
version. Files are written to a temporary name in the same folder and renamed, the record
last, so a name is either fully imported or absent.

Importing this module does not import torch (``dgp-tool weights list`` stays fast);
:func:`import_pair` does.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dgp_toolkit._version import __version__
from dgp_toolkit.errors import DGPError, DGPUsageError
from dgp_toolkit.paths import check_input_file, check_output_file, check_output_folder, new_file_mode

ENV_HOME = "DGP_TOOLKIT_HOME"
RECORD_FORMAT = "dgp-toolkit-weights-record/1"
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")
_CHUNK = 1 << 22


def home() -> Path:
    """The toolkit's cache folder (not created)."""
    override = os.environ.get(ENV_HOME, "").strip()
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "dgp-toolkit"


def weights_dir() -> Path:
    """Where imported weights and their records live."""
    return home() / "weights"


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``.

    The file gets the mode of any new file (safetensors writes its files ``0o600``; the
    record beside it would be ``0o644``).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass
class WeightsRecord:
    """What the cache knows about one imported name (the ``NAME.json`` record)."""

    name: str
    variant: str | None
    config: dict[str, Any]
    file: str  # relative to the record's folder, so the cache can be moved
    sha256: str
    size: int
    sources: list[dict[str, Any]] = field(default_factory=list)
    created: str = ""
    toolkit_version: str = __version__
    format: str = RECORD_FORMAT
    folder: Path | None = field(default=None, repr=False, compare=False)

    @property
    def path(self) -> Path:
        """The stored safetensors file."""
        return (self.folder or weights_dir()) / self.file

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("folder")
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_file(cls, path: Path) -> "WeightsRecord":
        """Read a record; an unreadable or malformed one raises :class:`DGPError`."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            fields = {f for f in cls.__dataclass_fields__ if f != "folder"}
            record = cls(**{k: v for k, v in data.items() if k in fields}, folder=path.parent)
            if not isinstance(record.config, dict) or not isinstance(record.file, str):
                raise TypeError("bad field types")
        except (OSError, ValueError, TypeError) as exc:
            raise DGPError(f"the weights record {path} is unreadable ({exc}); re-import it with --overwrite") from None
        return record


def record_path(name: str) -> Path:
    return weights_dir() / f"{name}.json"


def check_name(name: str) -> str:
    """``name`` if it can name imported weights (also a prior name), else a usage error."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise DGPUsageError(
            f"invalid weights name {name!r}: use lowercase letters, digits, '-' and '_', "
            "starting with a letter or digit"
        )
    return name


def list_records(errors: list[str] | None = None) -> list[WeightsRecord]:
    """Every imported name's record, sorted by name. Unreadable records are skipped
    (their one-line reasons appended to ``errors`` when given)."""
    folder = weights_dir()
    if not folder.is_dir():
        return []
    records = []
    for path in sorted(folder.glob("*.json")):
        if not _NAME_RE.match(path.stem):
            continue
        try:
            records.append(WeightsRecord.from_file(path))
        except DGPError as exc:
            if errors is not None:
                errors.append(str(exc))
    return records


def get_record(name: str) -> WeightsRecord | None:
    """The record of an imported name, or ``None``."""
    path = record_path(name)
    if not _NAME_RE.match(name) or not path.is_file():
        return None
    return WeightsRecord.from_file(path)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def import_pair(G_file: str | Path, D_file: str | Path, *, variant: str | None = None,
                config: dict[str, Any] | str | Path | None = None, name: str | None = None,
                overwrite: bool = False, log: Callable[[str], None] | None = None) -> WeightsRecord:
    """Validate a BigGAN-PyTorch ``G_ema`` + ``D`` pair and store it under ``name``.

    Exactly one of ``variant`` (a known variant, e.g. ``"biggan-imagenet-128"``) and
    ``config`` (a dict or a JSON file with the official argument names, for a BigGAN you
    trained) gives the architecture the files must fit exactly. ``name`` defaults to the
    variant. An existing name is kept unless ``overwrite``. ``log`` receives progress lines.
    Returns the new record; afterwards ``load_prior(name)`` loads the weights.
    """
    from dgp_toolkit.priors.biggan.model import BigGANConfig
    from dgp_toolkit.priors.biggan.variants import DEFAULT_PRIOR, get_variant, known_variants
    from dgp_toolkit.registry import unknown_name_message

    say = log or (lambda message: None)
    if (variant is None) == (config is None):
        raise DGPUsageError("give exactly one of --variant VARIANT and --config FILE.json")
    if variant is not None:
        known = get_variant(variant)
        if known is None:
            raise DGPUsageError(unknown_name_message("variant", variant, known_variants()))
        cfg = BigGANConfig.from_dict(known.config)
        target = variant
    else:
        if name is None:
            raise DGPUsageError("--config needs --as NAME (the name to load the imported weights by)")
        cfg = _config_from(config)
        target = "the given --config"
    name = check_name(name or str(variant))
    if name == DEFAULT_PRIOR:
        raise DGPUsageError(f"{DEFAULT_PRIOR!r} is the embedded prior's name; import under another name with --as NAME")
    existing = record_path(name)
    if existing.exists() and not overwrite:
        raise DGPUsageError(f"weights {name!r} are already imported ({existing}); add --overwrite to replace them")
    _check_cache_writable(name)  # before reading files of hundreds of MB

    from dgp_toolkit.priors.biggan.weights import (
        PRIOR_FORMAT,
        check_finite,
        check_weights_path,
        drop_instance_norm,
        read_state_dict,
        validate_pair,
    )

    G_path, D_path = Path(G_file).expanduser().resolve(), Path(D_file).expanduser().resolve()
    for path in (G_path, D_path):  # both, before reading a file of hundreds of MB
        check_weights_path(path)
    say(f"reading {G_path}")
    G_sd = drop_instance_norm(read_state_dict(G_path))
    say(f"reading {D_path}")
    D_sd = read_state_dict(D_path)
    validate_pair(cfg, G_sd, D_sd, target=target, sources=(G_path.name, D_path.name))
    check_finite(G_sd, str(G_path))
    check_finite(D_sd, str(D_path))
    sources = [
        {"role": role, "path": str(path), "size": path.stat().st_size, "sha256": sha256_file(path)}
        for role, path in (("G_ema", G_path), ("D", D_path))
    ]

    tensors = _prefixed(G_sd, D_sd)
    metadata = {"format": PRIOR_FORMAT, "name": name, "variant": variant or "",
                "config": json.dumps(cfg.to_dict(), sort_keys=True)}
    folder = weights_dir()
    target_file = folder / f"{name}.safetensors"
    say(f"writing {target_file}")
    from safetensors.torch import save_file

    try:
        if existing.exists():  # the old record must never describe the new file
            existing.unlink()
        with atomic_path(target_file) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
            digest, size = sha256_file(tmp), tmp.stat().st_size
        record = WeightsRecord(name=name, variant=variant, config=cfg.to_dict(), file=target_file.name,
                               sha256=digest, size=size, sources=sources, created=_now(), folder=folder)
        with atomic_path(existing) as tmp:
            tmp.write_text(record.to_json(), encoding="utf-8")
    except OSError as exc:
        raise DGPError(f"cannot write to the weights cache {folder}: {exc.strerror or exc} "
                       f"(set {ENV_HOME} to a writable folder)") from None
    from dgp_toolkit.registry import reset_registry

    reset_registry()  # the prior names come from the cache: register the new one
    return record


def _check_cache_writable(name: str) -> None:
    # A runtime error (exit 1), as when the write itself fails: the cache is no option.
    folder = weights_dir()
    try:
        check_output_folder(folder, "cannot write to the weights cache")
        for path in (folder / f"{name}.safetensors", record_path(name)):
            check_output_file(path, "cannot write to the weights cache:", overwrite=True)
    except DGPUsageError as exc:
        raise DGPError(f"{exc} (set {ENV_HOME} to a writable folder)") from None


def _config_from(config: dict[str, Any] | str | Path) -> Any:
    from dgp_toolkit.priors.biggan.model import BigGANConfig

    if isinstance(config, (str, Path)):
        path = Path(config).expanduser()
        check_input_file(path, "a JSON file")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise DGPUsageError(f"cannot read the config {path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise DGPUsageError(f"the config {path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise DGPUsageError(f"the config {path} must be a JSON object of BigGAN arguments")
        try:
            return BigGANConfig.from_dict(data)
        except (DGPUsageError, TypeError, ValueError) as exc:
            raise DGPUsageError(f"the config {path}: {exc}") from None
    return BigGANConfig.from_dict(dict(config))


def _prefixed(G_sd: dict[str, Any], D_sd: dict[str, Any]) -> dict[str, Any]:
    # safetensors refuses tensors that share memory or are views: copy those only (a
    # 128-px pair is 630 MB, so no blanket copy).
    import torch

    out: dict[str, Any] = {}
    seen: set[int] = set()
    for prefix, state in (("G.", G_sd), ("D.", D_sd)):
        for key, tensor in state.items():
            tensor = tensor.detach()
            storage = tensor.untyped_storage()
            if (storage.data_ptr() in seen or not tensor.is_contiguous()
                    or storage.nbytes() != tensor.numel() * tensor.element_size()):
                tensor = tensor.clone(memory_format=torch.contiguous_format)
            if tensor.numel():
                seen.add(tensor.untyped_storage().data_ptr())
            out[prefix + key] = tensor
    return out


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of checking one stored file: ``status`` is ``ok``, ``modified``, ``missing``
    or ``non-finite`` (NaN or infinite weights, stored before imports refused them)."""

    name: str
    path: Path
    status: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def verify_record(record: WeightsRecord) -> VerifyResult:
    """Re-hash the stored file of ``record`` and compare with the recorded sha256 and size;
    then check that every weight is finite."""
    path = record.path
    if not path.is_file():
        return VerifyResult(record.name, path, "missing", "the stored file is gone; re-import it")
    size = path.stat().st_size
    digest = sha256_file(path)
    if digest != record.sha256 or size != record.size:
        return VerifyResult(record.name, path, "modified",
                            f"sha256 {digest[:12]} (recorded {record.sha256[:12]}), {size} bytes "
                            f"(recorded {record.size}); re-import it with --overwrite")
    problem = _non_finite_weights(path)
    if problem is not None:
        return VerifyResult(record.name, path, "non-finite",
                            f"{problem}; import good weights with --overwrite")
    return VerifyResult(record.name, path, "ok", f"sha256 {digest[:12]}")


def _non_finite_weights(path: Path) -> str | None:
    # One tensor at a time: a 256-px pair is over a gigabyte.
    from safetensors import safe_open

    from dgp_toolkit.priors.biggan.weights import non_finite

    with safe_open(str(path), framework="pt", device="cpu") as f:
        for key in f.keys():
            problem = non_finite({key: f.get_tensor(key)})
            if problem is not None:
                return problem
    return None


def verify(name: str | None = None) -> list[VerifyResult]:
    """Verify one imported name, or every one (``name=None``)."""
    if name is None:
        problems: list[str] = []
        results = [verify_record(r) for r in list_records(problems)]
        if problems:
            raise DGPError(problems[0])
        return results
    record = get_record(name)
    if record is None:
        from dgp_toolkit.registry import unknown_name_message

        raise DGPUsageError(unknown_name_message("imported weights", name, [r.name for r in list_records()]))
    return [verify_record(record)]
