"""Write the benchmark tables into docs/ from the benchmarks' own output files.

    python benchmarks/docs_tables.py [--check]

Each table lives in a page of docs/ (:data:`PAGES`) between ``<!-- BEGIN NAME -->`` and
``<!-- END NAME -->`` and is replaced by the text generated from its source (figures are
never typed by hand):

=================  =========================================================  ==================
``prior-quality``  ``benchmarks/results/prior_quality.json`` (``prior_quality.py --json``)  docs/priors.md
``quality-100``    ``benchmarks/results/quality-100/quality.md`` (``quality.py --n 100 ...``)  docs/benchmarks.md
``speed``          ``benchmarks/results/speed/speed.md`` (``speed.py``)            docs/benchmarks.md
``engine-speed``   ``benchmarks/results/engine_vs_reference_n20.json``               docs/benchmarks.md
                   (``engine_vs_reference.py --n 20 --json``)
``colorization-``  ``benchmarks/results/colorization/accuracy.json``                 docs/benchmarks.md
``accuracy``       (``colorization_accuracy.py benchmarks/results/colorization``)
=================  =========================================================  ==================

A source that does not exist leaves its block as it is. ``--check`` writes nothing and
exits 1 when a page is not up to date.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def prior_quality_table(path: Path) -> str:
    data = json.loads(path.read_text())
    rows = data["rows"] if "rows" in data else [data]
    lines = [f"Command: `{data.get('command', 'python benchmarks/prior_quality.py')}`", "",
             "| prior | iterations | sample accuracy | Frechet distance (classifier features) | "
             "mean L2 to nearest training image |",
             "|---|---|---|---|---|"]
    for r in rows:
        nearest = sum(r["nearest_l2"]) / len(r["nearest_l2"])
        lines.append(f"| {r.get('label', r.get('prior', '?'))} | {r.get('step', '?')} | {100 * r['sample_accuracy']:.1f}% | "
                     f"{r['frechet_distance']:.2f} | {nearest:.2f} |")
    if "classifier_dev_accuracy" in data:
        lines += ["", f"Classifier accuracy on the 1,000 dev images: {100 * data['classifier_dev_accuracy']:.1f}%."]
    return "\n".join(lines) + "\n"


def engine_speed_table(path: Path) -> str:
    s = json.loads(path.read_text())["summary"]
    o, r = s["ours"], s["reference_style"]
    lines = [f"Command: `{s.get('command', 'python benchmarks/engine_vs_reference.py')}`"
             + (f"; {s['date']} on {s['machine']}" if "date" in s else ""), "",
             f"{s['task']}, {s['n']} dev images, {s['select_num']} candidates, {s['steps']} steps, "
             f"{s['threads']} torch thread(s), our precision {s.get('precision', 'float32')}"
             + (", channels-last" if s.get("channels_last") else "") + ".", "",
             "| | selection s | optimization s | total s | mean PSNR dB |", "|---|---|---|---|---|",
             f"| reference-style loop | {r['select_s']:.1f} | {r['optimize_s']:.1f} | "
             f"{r['select_s'] + r['optimize_s']:.1f} | {s['psnr']['reference_style']:.2f} |",
             f"| dgp-toolkit engine | {o['select_s']:.1f} | {o['optimize_s']:.1f} | "
             f"{o['select_s'] + o['optimize_s']:.1f} | {s['psnr']['ours']:.2f} |",
             f"| ratio | {s['speedup']['select']:.2f}x | {s['speedup']['optimize']:.2f}x | "
             f"{s['speedup']['total']:.2f}x | {s['psnr']['ours'] - s['psnr']['reference_style']:+.2f} dB |", "",
             f"Observation PSNR {s['psnr']['observation']:.2f} dB; peak RSS {s['peak_rss_mb']:.0f} MB."]
    return "\n".join(lines) + "\n"


COLORIZATION_ROWS = [("clean", "original (colour)"), ("observation", "grey input"),
                     ("gan-inversion", "GAN inversion (`latent-only`), Lab L put back"),
                     ("dgp", "**DGP**, Lab L put back")]


def colorization_accuracy_table(path: Path) -> str:
    data = json.loads(path.read_text())
    psnr = data["mean_psnr"]
    best_psnr = max(psnr, key=psnr.get)
    lines = [f"| image ({data['n']} dev images) | top-1 accuracy (95% Wilson interval) | p(true class) gain over "
             "grey (95% CI) | right where grey is wrong / the reverse (McNemar p) | mean Lab chroma | "
             "mean PSNR (dB) |", "|---|---|---|---|---|---|"]
    for key, name in COLORIZATION_ROWS:
        m = data["methods"][key]
        low, high = m["wilson95"]
        accuracy = f"{100 * m['accuracy']:.0f}% ({100 * low:.0f}-{100 * high:.0f}%)"
        gain = paired = ""
        if "vs_observation" in m:
            v = m["vs_observation"]
            gain = f"{v['true_class_probability_gain']:+.3f} ± {v['true_class_probability_gain_ci95']:.3f}"
            paired = f"{v['right_where_grey_wrong']} / {v['wrong_where_grey_right']} ({v['mcnemar_p']:.2g})"
        if key == "dgp":
            accuracy, gain = f"**{accuracy}**", f"**{gain}**"
        score = "" if key not in psnr else (f"**{psnr[key]:.2f}**" if key == best_psnr else f"{psnr[key]:.2f}")
        lines.append(f"| {name} | {accuracy} | {gain} | {paired} | {m['mean_chroma']:.1f} | {score} |")
    return "\n".join(lines) + "\n"


SOURCES = {
    "prior-quality": (RESULTS / "prior_quality.json", prior_quality_table),
    "quality-100": (RESULTS / "quality-100" / "quality.md", lambda p: p.read_text()),
    "speed": (RESULTS / "speed" / "speed.md", lambda p: p.read_text()),
    "engine-speed": (RESULTS / "engine_vs_reference_n20.json", engine_speed_table),
    "colorization-accuracy": (RESULTS / "colorization" / "accuracy.json", colorization_accuracy_table),
}


#: The pages of docs/ that hold generated tables.
PAGES = (ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "priors.md")


def block_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- BEGIN {re.escape(name)} -->\n)(.*?)(<!-- END {re.escape(name)} -->)", re.S)


def render(pages: dict[Path, str]) -> dict[Path, str]:
    """The pages with every block whose source exists replaced by the generated table."""
    pages = dict(pages)
    for name, (path, make) in SOURCES.items():
        if not path.exists():
            continue
        pattern = block_pattern(name)
        holders = [page for page, text in pages.items() if pattern.search(text)]
        if not holders:
            print(f"warning: no page of docs/ has the block {name!r}", file=sys.stderr)
            continue
        body = make(path)
        # the tables' own level-1 headings would break the page's outline
        body = "\n".join(line for line in body.splitlines() if not line.startswith("# ")).strip("\n") + "\n"
        for page in holders:
            pages[page] = pattern.sub(lambda m: m.group(1) + body + m.group(3), pages[page])
    return pages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=Path, nargs="+", default=list(PAGES),
                        help="the pages to update (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="exit 1 if a page is out of date; write nothing")
    args = parser.parse_args(argv)
    old = {page: page.read_text() for page in args.pages}
    new = render(old)
    stale = [page for page in args.pages if new[page] != old[page]]
    if args.check:
        for page in stale:
            print(f"{page} is out of date: run python benchmarks/docs_tables.py", file=sys.stderr)
        return 1 if stale else 0
    for page in stale:
        page.write_text(new[page])
        print(f"updated {page}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
