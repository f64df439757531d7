"""Merge ``dds evaluate`` JSON files into one Markdown table per seed (docs/dds_modes.md).

Rows: cell (source → target, mask) × method; columns: in-mask source style, ÷ paste, outside target style,
outside LPIPS to x_t. With ``--segmenter`` files (``--mask-source segmenter`` runs of the same seed), a column
gives each method's in-mask source style with the segmenter's masks ÷ the same with the oracle masks.

    python docs/scripts/dds_eval_table.py runs/dds_eval/new_s0.json runs/dds_eval/old_s0.json \\
        [--segmenter runs/dds_eval/seg_s0.json]
"""
from __future__ import annotations

import argparse
import json


def _rows(paths: list[str]) -> dict[tuple[str, str, str], dict]:
    out: dict[tuple[str, str, str], dict] = {}
    for path in paths:
        for r in json.load(open(path))["rows"]:
            out.setdefault((f"{r['source']} → {r['target']}", r["mask"], r["method"]), r)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("json", nargs="+")
    p.add_argument("--segmenter", nargs="*", default=[])
    a = p.parse_args()
    rows, seg = _rows(a.json), _rows(a.segmenter)
    order = ["crossover", "paste", "dds-paper", "dds-release", "dds-blend", "dds-refine", "render-composite"]

    def f(x, fmt):
        return "–" if x is None else format(x, fmt)

    head = "| cell | method | in-mask source | ÷ paste | outside target | outside LPIPS |"
    print(head + (" segmenter ÷ oracle |" if seg else ""))
    print("|---|---|---:|---:|---:|---:|" + ("---:|" if seg else ""))
    cells = list(dict.fromkeys((c, m) for c, m, _ in rows))
    for cell, mask in cells:
        for method in order:
            r = rows.get((cell, mask, method))
            if r is None:
                continue
            line = (f"| {cell}, {mask} | {method} | {f(r['inside_source'], '.3f')} | {f(r['relative_inside'], '.2f')} "
                    f"| {f(r['outside_target'], '.3f')} | {f(r.get('outside_lpips'), '.3f')} |")
            if seg:
                s = seg.get((cell, mask, method))
                ok = s and method.startswith("dds-") and r["inside_source"]
                line += f" {s['inside_source'] / r['inside_source']:.2f} |" if ok else " |"
            print(line)


if __name__ == "__main__":
    main()
