"""Where DGP's inpainting loses to biharmonic inpainting: the hole's PSNR after latent selection
and after every stage, and whether a Poisson blend of the fill into the known pixels helps.

    python benchmarks/inpainting_diagnostics.py run 950 994 --out DIR --part 0 --parts 2 &
    python benchmarks/inpainting_diagnostics.py run 950 994 --out DIR --part 1 --parts 2
    python benchmarks/inpainting_diagnostics.py report DIR --json benchmarks/results/inpainting-diagnostics/held-out-950-993.json

``run`` restores positions ``LO..HI-1`` of quality.py's class-balanced dev order with the
shipped inpainting preset (seed = position, bf16, as quality.py does) and writes one ``.npz``
per image: the clean image, the selected candidate's render, the raw generator output at the
end of each stage and at the end. ``report`` scores the hole's bounding box (quality.py's
protocol) for each, for scikit-image's biharmonic inpainting, and for the final fill
Poisson-blended (the fill's gradients inside the hole, the observation's values on its edge:
``g + H(obs - g)`` with ``H`` the harmonic interpolation from the hole's border).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def run(lo: int, hi: int, out: Path, part: int, parts: int) -> None:
    import torch

    import quality as q
    from dgp_toolkit.engine import BatchRun, Job, RunOptions

    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    ctx = q.Context(q.Settings(iterations_scale=1.0, select_num=None, seed=0, precision="bf16", methods="dgp"))
    images, _, labels = q.dev_subset(hi)
    setup = ctx.setup("inpainting", "dgp")
    prior, deg = ctx.prior, setup.degradation
    for k in range(lo + part, hi, parts):
        clean = images[k].float().reshape(1, 3, 32, 32)
        with torch.no_grad():
            target = deg.degrade(clean, generator=torch.Generator().manual_seed(k))
        dgp = BatchRun(prior, deg, [Job(target, k)], preset=setup.preset, options=RunOptions(seed=k, precision="bf16"))
        z0, classes, _ = dgp.select()
        c = int(classes[0])
        with torch.no_grad():
            x0 = prior.generate(z0, classes)
        [res] = dgp.optimize(z0, classes)
        np.savez(out / f"{k:03d}.npz", clean=clean.numpy(), x0=x0.numpy(), raw=res.image.numpy(),
                 snaps=np.stack([s.numpy() for s in res.snapshots]), label=labels[k], cls=c)
        print(k, flush=True)


def harmonic_fill(u: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """``u`` (H, W, C) with its ``missing`` pixels replaced by the harmonic interpolation
    (4-neighbour Laplace equation) of the known pixels around them."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as spl

    h, w = missing.shape
    pts = np.argwhere(missing)
    idx = -np.ones(missing.shape, int)
    idx[missing] = np.arange(len(pts))
    a = sp.lil_matrix((len(pts), len(pts)))
    b = np.zeros((len(pts), u.shape[2]))
    for k, (i, j) in enumerate(pts):
        n = 0
        for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            y, x = i + di, j + dj
            if 0 <= y < h and 0 <= x < w:
                n += 1
                if missing[y, x]:
                    a[k, idx[y, x]] = -1
                else:
                    b[k] += u[y, x]
        a[k, k] = n
    out = u.copy()
    out[missing] = spl.spsolve(a.tocsr(), b).reshape(len(pts), -1)
    return out


def report(folder: Path) -> dict:
    from skimage.restoration import inpaint_biharmonic

    from dgp_toolkit.metrics import inpainting_scores
    from dgp_toolkit.plugins.degradations.mask import Mask

    missing = Mask().missing(32, 32)

    def unit(t: np.ndarray) -> np.ndarray:
        return np.clip((t.reshape(3, 32, 32).transpose(1, 2, 0) + 1) / 2, 0, 1).astype(np.float64)

    def hole(img: np.ndarray, clean: np.ndarray) -> float:
        return inpainting_scores(img, clean, missing)["psnr"]

    rows = []
    for path in sorted(folder.glob("*.npz")):
        d = np.load(path)
        clean, g = unit(d["clean"]), unit(d["raw"])
        obs = np.where(missing[..., None], 0.0, clean)
        fill = np.where(missing[..., None], g, obs)  # restore's inpainting finish
        poisson = np.clip(g + harmonic_fill(np.where(missing[..., None], 0.0, obs - g), missing), 0, 1)
        rows.append({"position": int(path.stem), "label": int(d["label"]), "class": int(d["cls"]),
                     "biharmonic": hole(inpaint_biharmonic(obs, missing, channel_axis=-1), clean),
                     "selected": hole(unit(d["x0"]), clean),
                     "stages": [hole(unit(s), clean) for s in d["snaps"]],
                     "dgp": hole(fill, clean), "poisson": hole(poisson, clean)})
    n = len(rows)
    col = {k: np.array([r[k] for r in rows]) for k in ("biharmonic", "selected", "dgp", "poisson")}
    stages = np.array([r["stages"] for r in rows])
    def ci(d: np.ndarray) -> float | None:  # half-width of a 95% normal interval
        return float(1.96 * d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else None

    summary = {"n": n, **{f"{k}_mean": float(v.mean()) for k, v in col.items()},
               "stage_means": stages.mean(0).tolist(),
               "dgp_above_biharmonic": int((col["dgp"] > col["biharmonic"] + 0.01).sum()),
               "last_minus_stage3": [float((col["dgp"] - stages[:, 2]).mean()), ci(col["dgp"] - stages[:, 2])],
               "poisson_minus_dgp": [float((col["poisson"] - col["dgp"]).mean()), ci(col["poisson"] - col["dgp"])]}
    return {"summary": summary, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("lo", type=int)
    r.add_argument("hi", type=int)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--part", type=int, default=0)
    r.add_argument("--parts", type=int, default=1)
    p = sub.add_parser("report")
    p.add_argument("folder", type=Path)
    p.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.cmd == "run":
        run(args.lo, args.hi, args.out, args.part, args.parts)
        return
    result = report(args.folder)
    text = json.dumps(result["summary"], indent=1)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
