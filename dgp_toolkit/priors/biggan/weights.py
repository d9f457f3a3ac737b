"""Reading BigGAN weights safely and loading them strictly.

Two formats are read: safetensors (preferred: no code can hide in it) and the ``.pth``
pickles of BigGAN-PyTorch, which are opened only with ``torch.load(...,
weights_only=True)``. A pickle that needs anything beyond tensors and plain containers
is refused, never executed. Which format a file is in is read from its first bytes,
not its name.

Loading is strict: every key of the network must be in the file with the right shape,
and the file must hold nothing else. A mismatch is one :class:`DGPUsageError` line that
names the first few offending keys and says what architecture the file looks like
(inferred from its key names and shapes by :func:`infer_config`).

>>> import torch
>>> from dgp_toolkit.priors.biggan.model import BigGANConfig, Generator, Discriminator
>>> cfg = BigGANConfig(resolution=32, G_ch=16, D_ch=16, dim_z=64, shared_dim=32,
...                    n_classes=10, G_attn="0", D_attn="0")
>>> with torch.device("meta"):
...     G_sd, D_sd = Generator(cfg).state_dict(), Discriminator(cfg).state_dict()
>>> infer_config(G_sd, D_sd) == cfg
True
>>> describe_config(infer_config(G_sd, D_sd))
'a 32-px BigGAN (G_ch 16, D_ch 16, dim_z 64, shared_dim 32, 10 classes, hier, attention G 0 / D 0)'
"""

from __future__ import annotations

import json
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from dgp_toolkit.errors import DGPUsageError
from dgp_toolkit.paths import input_file_problem
from dgp_toolkit.priors.biggan.model import (
    D_ARCH,
    G_ARCH,
    BigGANConfig,
    Discriminator,
    Generator,
    parse_attn,
)

__all__ = [
    "build_networks",
    "check_finite",
    "check_state_dict",
    "describe_config",
    "describe_state_dicts",
    "expected_shapes",
    "infer_config",
    "matching_variant",
    "non_finite",
    "read_prior_file",
    "read_state_dict",
    "read_weights",
    "split_prior",
]

#: The ``format`` metadata of a prior file (``G.*`` + ``D.*`` safetensors).
PRIOR_FORMAT = "dgp-toolkit-biggan/1"

_SHOW = 3  # keys named in an error message, per kind of problem
# DGP's instance-norm layers are re-initialised at every run; a fine-tuned G saved by the
# DGP reference may carry them, the official checkpoints do not. They are dropped.
_INSTANCE_NORM_KEY = re.compile(r"^blocks\.\d+\.0\.in[12]\.")
_G_RES_BY_BLOCKS = {len(ins): res for res, (ins, _) in G_ARCH.items()}
_D_RES_BY_BLOCKS = {len(outs): res for res, (_, outs, _, _) in D_ARCH.items()}
_CONVERT_HINT = ("if you trust its source, convert it once in Python with "
                 "safetensors.torch.save_file(torch.load(FILE, weights_only=False), 'FILE.safetensors') "
                 "and use the .safetensors file")


# ---------------------------------------------------------------------------- reading files
def _is_safetensors(path: Path) -> bool:
    # A safetensors file starts with an 8-byte little-endian header size, then a JSON header.
    with path.open("rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def check_weights_path(path: str | Path) -> Path:
    """``path`` (user-expanded) if it is an existing regular file; else a :class:`DGPUsageError`
    (a pipe or device is refused before it is opened: reading a FIFO would block)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DGPUsageError(f"weights file not found: {path}")
    if path.is_dir():
        raise DGPUsageError(f"{path} is a folder, not a weights file")
    problem = input_file_problem(path, "a weights file")
    if problem is not None:
        raise DGPUsageError(f"{path}: {problem}")
    return path


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a weights file into ``(tensors on CPU, metadata)``.

    safetensors files give their metadata; ``.pth`` files give ``{}``. A pickle that
    carries code, a truncated or corrupt file, or one that is not a flat mapping of
    names to tensors raises :class:`DGPUsageError` naming the file.
    """
    path = check_weights_path(path)
    try:
        is_safe = _is_safetensors(path)
    except OSError as exc:
        raise DGPUsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    if is_safe:
        return _read_safetensors(path)
    return _read_pickle(path), {}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (see :func:`read_weights`)."""
    return read_weights(path)[0]


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as exc:  # safetensors raises its own error type for bad files
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DGPUsageError(f"cannot read {path}: the safetensors file is truncated or corrupt ({reason})") from None
    return tensors, metadata


#: How files that are no weights start (for a clearer message than the unpickler's).
_OTHER_FORMATS = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image",
                  b"%PDF": "a PDF document", b"\x1f\x8b": "a gzip archive", b"BM": "a BMP image"}


def _read_pickle(path: Path) -> dict[str, torch.Tensor]:
    with path.open("rb") as f:
        head = f.read(8)
    # torch.save writes a zip archive ("PK"); the legacy format and plain pickles begin
    # with the pickle protocol opcode 0x80. Anything else is not a weights file.
    if not head:
        raise DGPUsageError(f"cannot read {path}: the file is empty (truncated or corrupt)")
    if not head.startswith((b"PK", b"\x80")):
        kind = next((what for magic, what in _OTHER_FORMATS.items() if head.startswith(magic)), None)
        if kind:
            raise DGPUsageError(f"cannot read {path}: it is {kind}, not a PyTorch (.pth) or safetensors weights file")
        raise DGPUsageError(f"cannot read {path}: not a PyTorch (.pth) or safetensors weights file, or truncated "
                            "or corrupt (it does not begin as one does)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols, not ours to show
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        message = str(exc)
        found = re.search(r"GLOBAL ([\w.]+)", message)
        if found or "Unsupported operand" in message or "Unsupported class" in message:
            what = f" ({found.group(1)})" if found else ""
            raise DGPUsageError(
                f"refusing to unpickle {path}: it contains code objects{what}, and weights are only "
                f"read with torch.load(weights_only=True); {_CONVERT_HINT}"
            ) from None
        raise DGPUsageError(f"cannot read {path}: the file is truncated or corrupt ({_first_line(message)})") from None
    except Exception as exc:  # zip, EOF, key and OS errors all mean a damaged file
        reason = _first_line(str(exc)) or type(exc).__name__
        raise DGPUsageError(
            f"cannot read {path}: not a PyTorch or safetensors weights file, or truncated or corrupt ({reason})"
        ) from None
    return _flat_tensors(obj, path)


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip() and not line.startswith("Weights only load failed"):
            return " ".join(line.split()).split(". ")[0][:200]  # torch appends long advice
    return ""


def _flat_tensors(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise DGPUsageError(f"{path} holds a {type(obj).__name__}, not a state dict (a mapping of names to tensors)")
    bad = [str(k) for k, v in obj.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        raise DGPUsageError(
            f"{path} is not a plain state dict: {len(bad)} entries are not tensors ({', '.join(bad[:_SHOW])}); "
            "give the G_ema / D state-dict files, not a training checkpoint"
        )
    tensors = dict(obj)
    if tensors and all(k.startswith("module.") for k in tensors):  # saved from DataParallel
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def split_prior(tensors: Mapping[str, torch.Tensor], source: str | Path = "the file",
                ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Split a prior file's tensors (keys ``G.<key>`` and ``D.<key>``) into G and D."""
    G_sd = {k[2:]: v for k, v in tensors.items() if k.startswith("G.")}
    D_sd = {k[2:]: v for k, v in tensors.items() if k.startswith("D.")}
    other = [k for k in tensors if not k.startswith(("G.", "D."))]
    if not G_sd or not D_sd or other:
        detail = f"unexpected keys {', '.join(other[:_SHOW])}" if other else \
            f"{'no G.* keys' if not G_sd else 'no D.* keys'}"
        raise DGPUsageError(
            f"{source} is not a prior file (G.<key> and D.<key> tensors): {detail}; "
            "for a G_ema + D pair of .pth files give the folder holding them"
        )
    return G_sd, D_sd


def read_prior_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, str]]:
    """``(G state dict, D state dict, metadata)`` of a prior file (``G.*``/``D.*`` tensors)."""
    tensors, metadata = read_weights(path)
    G_sd, D_sd = split_prior(tensors, path)
    return G_sd, D_sd, metadata


# ------------------------------------------------------------------- architecture inference
def _block_ids(sd: Mapping[str, Any]) -> list[int]:
    return sorted({int(k.split(".")[1]) for k in sd if re.match(r"blocks\.\d+\.", k)})


def _shape(sd: Mapping[str, Any], key: str, what: str) -> tuple[int, ...]:
    if key not in sd:
        raise DGPUsageError(f"does not look like a BigGAN {what}: it has no key {key!r}")
    return tuple(sd[key].shape)


def infer_config(G_sd: Mapping[str, Any], D_sd: Mapping[str, Any] | None = None,
                 **defaults: Any) -> BigGANConfig:
    """The :class:`BigGANConfig` a pair of state dicts was made with, from key names and shapes.

    Resolution from the number of generator blocks, ``G_ch`` from the output layer's
    width, ``n_classes``/``shared_dim`` from ``shared.weight``, ``hier`` and the latent
    size from ``linear.weight`` and the conditional batch norms, attention from the
    blocks that have a second module, ``D_ch``/``D_attn`` from D (else G's values).
    ``dim_z`` is the effective size (119, not 120, for the 256-px models). What shapes
    cannot tell (``SN_eps``, ``BN_eps``) comes from ``defaults`` or the class defaults.
    Raises :class:`DGPUsageError` for a state dict that is not a BigGAN's.
    """
    G_sd = {k: v for k, v in G_sd.items() if not _INSTANCE_NORM_KEY.match(k)}
    blocks = _block_ids(G_sd)
    if blocks != list(range(len(blocks))) or len(blocks) not in _G_RES_BY_BLOCKS:
        raise DGPUsageError(f"does not look like a BigGAN generator: blocks {blocks}")
    res = _G_RES_BY_BLOCKS[len(blocks)]
    ins, outs = G_ARCH[res]
    n_classes, shared_dim = _shape(G_sd, "shared.weight", "generator")
    out_width = _shape(G_sd, "output_layer.0.gain", "generator")[0]
    G_ch = out_width // outs[-1]
    linear_out, z_in = _shape(G_sd, "linear.weight", "generator")
    cond_dim = _shape(G_sd, "blocks.0.0.bn1.gain.weight", "generator")[1]
    hier = cond_dim == shared_dim + z_in
    dim_z = z_in * (len(blocks) + 1) if hier else z_in
    G_attn = "_".join(str(8 * 2**i) for i in blocks if f"blocks.{i}.1.gamma" in G_sd) or "0"
    D_ch, D_attn = G_ch, G_attn
    if D_sd is not None:
        d_blocks = _block_ids(D_sd)
        if len(d_blocks) not in _D_RES_BY_BLOCKS:
            raise DGPUsageError(f"does not look like a BigGAN discriminator: blocks {d_blocks}")
        d_res = _D_RES_BY_BLOCKS[len(d_blocks)]
        if d_res != res:
            raise DGPUsageError(f"the generator is a {res}-px BigGAN's but the discriminator a {d_res}-px one's")
        _, d_outs, _, table_res = D_ARCH[res]
        D_ch = _shape(D_sd, "blocks.0.0.conv1.weight", "discriminator")[0] // d_outs[0]
        attn = sorted({table_res[i] for i in d_blocks if f"blocks.{i}.1.gamma" in D_sd})
        D_attn = "_".join(map(str, attn)) or "0"
    values = dict(resolution=res, G_ch=G_ch, D_ch=D_ch, dim_z=dim_z, shared_dim=shared_dim, hier=hier,
                  n_classes=n_classes, G_attn=G_attn, D_attn=D_attn)
    values.update({k: v for k, v in defaults.items() if k in ("SN_eps", "BN_eps", "G_shared")})
    if G_ch * outs[-1] != out_width or linear_out != ins[0] * G_ch * 16:
        raise DGPUsageError("does not look like a BigGAN generator: its layer widths do not fit any channel table")
    return BigGANConfig(**values)


def _arch_key(config: BigGANConfig) -> tuple:
    # Configurations that build identical networks: compare the effective latent size.
    d = config.to_dict()
    d["dim_z"] = config.effective_dim_z
    d["G_attn"] = "_".join(map(str, sorted(parse_attn(config.G_attn)))) or "0"
    d["D_attn"] = "_".join(map(str, sorted(parse_attn(config.D_attn)))) or "0"
    for key in ("SN_eps", "BN_eps"):
        d.pop(key)
    return tuple(sorted(d.items()))


def matching_variant(config: BigGANConfig) -> str | None:
    """The name of the known variant with this architecture, or ``None``."""
    from dgp_toolkit.priors.biggan.variants import known_variants

    key = _arch_key(config)
    for name, variant in known_variants().items():
        if _arch_key(BigGANConfig.from_dict(variant.config)) == key:
            return name
    return None


def describe_config(config: BigGANConfig) -> str:
    """A short human description of an architecture (used in error messages)."""
    c = config
    text = (f"a {c.resolution}-px BigGAN (G_ch {c.G_ch}, D_ch {c.D_ch}, dim_z {c.effective_dim_z}, "
            f"shared_dim {c.shared_dim}, {c.n_classes} classes, {'hier' if c.hier else 'not hier'}, "
            f"attention G {c.G_attn} / D {c.D_attn})")
    variant = matching_variant(c)
    return f"{text}, variant {variant}" if variant else text


def describe_state_dicts(G_sd: Mapping[str, Any], D_sd: Mapping[str, Any] | None = None) -> str:
    """What a pair of state dicts looks like, for error messages; never raises."""
    try:
        return describe_config(infer_config(G_sd, D_sd))
    except DGPUsageError as exc:
        if D_sd is not None:
            try:
                return describe_config(infer_config(G_sd)) + f" (its discriminator does not fit: {exc})"
            except DGPUsageError:
                pass
        if "shared.weight" not in G_sd and any(k.startswith("embed.") for k in G_sd):
            return "a BigGAN discriminator where the generator was expected (are the two files swapped?)"
        return f"no BigGAN ({exc})"


# ------------------------------------------------------------------------- strict loading
def expected_shapes(config: BigGANConfig) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """Key names and shapes of G's and D's state dicts for ``config`` (no memory used)."""
    with torch.device("meta"):
        G, D = Generator(config), Discriminator(config)
    return ({k: tuple(v.shape) for k, v in G.state_dict().items()},
            {k: tuple(v.shape) for k, v in D.state_dict().items()})


def check_state_dict(expected: Mapping[str, tuple[int, ...]], state: Mapping[str, torch.Tensor],
                     ) -> str | None:
    """``None`` when ``state`` has exactly the expected keys and shapes, else the problems."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k])]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys ({_few(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({_few(unexpected)})")
    if wrong:
        shown = ", ".join(f"{k}: file {list(state[k].shape)}, expected {list(expected[k])}" for k in wrong[:_SHOW])
        more = f", +{len(wrong) - _SHOW} more" if len(wrong) > _SHOW else ""
        problems.append(f"{len(wrong)} with wrong shapes ({shown}{more})")
    bad_dtype = [k for k in state if k in expected and not state[k].is_floating_point()]
    if bad_dtype:
        problems.append(f"non-float tensors ({_few(bad_dtype)})")
    return "; ".join(problems) or None


def _few(keys: list[str]) -> str:
    more = f", +{len(keys) - _SHOW} more" if len(keys) > _SHOW else ""
    return ", ".join(keys[:_SHOW]) + more


def drop_instance_norm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` without DGP's instance-norm entries (re-initialised every run anyway)."""
    return {k: v for k, v in state.items() if not _INSTANCE_NORM_KEY.match(k)}


def validate_pair(config: BigGANConfig, G_sd: Mapping[str, torch.Tensor], D_sd: Mapping[str, torch.Tensor],
                  *, target: str, sources: tuple[str, str] = ("G_ema", "D")) -> None:
    """Raise one :class:`DGPUsageError` line unless G_sd and D_sd fit ``config`` exactly.

    ``target`` names what they should be (``"biggan-imagenet-128"``); ``sources`` names
    the two files (or roles) in the message. The message says what the files look like.
    """
    exp_G, exp_D = expected_shapes(config)
    for label, expected, state in ((sources[0], exp_G, G_sd), (sources[1], exp_D, D_sd)):
        problems = check_state_dict(expected, state)
        if problems:
            looks = describe_state_dicts(G_sd, D_sd)
            raise DGPUsageError(f"{label} does not fit {target}: {problems}; the files look like {looks}")


def non_finite(tensors: Mapping[str, torch.Tensor]) -> str | None:
    """What is wrong with the first tensor holding NaN or infinity (``None``: all finite).

    Such weights load without complaint and make every restoration fail much later, with
    a non-finite loss that looks like a learning-rate problem.

    >>> non_finite({"a": torch.ones(2), "b": torch.tensor([1.0, float("nan"), float("inf")])})
    "tensor 'b' holds NaN and infinity (2 of its 3 values)"
    """
    for key, tensor in tensors.items():
        if not tensor.is_floating_point() or tensor.numel() == 0:
            continue
        # min and max are NaN if any value is, and infinite if any value is: two reductions
        # without a mask the size of the tensor (5x faster; a 128-px pair has 158 M values)
        low, high = torch.aminmax(tensor.detach())
        if bool(torch.isfinite(low)) and bool(torch.isfinite(high)):
            continue
        finite = torch.isfinite(tensor)
        nan = bool(torch.isnan(tensor).any())
        inf = bool(torch.isinf(tensor).any())
        what = " and ".join(w for w, present in (("NaN", nan), ("infinity", inf)) if present)
        return f"tensor {key!r} holds {what} ({int((~finite).sum())} of its {tensor.numel()} values)"
    return None


def check_finite(tensors: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise one :class:`DGPUsageError` line naming ``source`` and its first non-finite tensor."""
    problem = non_finite(tensors)
    if problem is not None:
        raise DGPUsageError(f"{source}: {problem}; these weights are damaged (or their training "
                            "diverged) and cannot be used as a prior")


def build_networks(config: BigGANConfig, G_sd: Mapping[str, torch.Tensor], D_sd: Mapping[str, torch.Tensor],
                   *, target: str, sources: tuple[str, str] = ("G_ema", "D"),
                   ) -> tuple[Generator, Discriminator]:
    """G and D for ``config`` holding exactly these weights, in eval mode, on the CPU.

    The networks are built on the meta device and take the given tensors (as float32)
    without a random initialisation first, so a 128-px pair loads in a fraction of a
    second. They take them without copying: float32 CPU tensors become the parameters
    (pass copies if you keep using the dicts). Mismatches raise as :func:`validate_pair` says,
    NaN or infinite weights as :func:`check_finite` does.
    """
    G_sd, D_sd = drop_instance_norm(G_sd), dict(D_sd)
    validate_pair(config, G_sd, D_sd, target=target, sources=sources)
    check_finite(G_sd, sources[0])
    check_finite(D_sd, sources[1])
    with torch.device("meta"):
        G, D = Generator(config), Discriminator(config)
    for net, state in ((G, G_sd), (D, D_sd)):
        state = {k: v.detach().to(device="cpu", dtype=torch.float32) for k, v in state.items()}
        net.load_state_dict(state, strict=True, assign=True)
        net.eval()
    return G, D


def config_from_metadata(metadata: Mapping[str, str]) -> BigGANConfig | None:
    """The architecture recorded in a prior file's metadata (``config`` JSON), if any."""
    text = metadata.get("config")
    if not text:
        return None
    try:
        return BigGANConfig.from_dict(json.loads(text))
    except ValueError as exc:
        raise DGPUsageError(f"the file's recorded config is invalid: {exc}") from None
