"""Summarises benches/search-quality.sh's results.tsv as the README's table: per dataset, setting and
mode, top-1 of the searched network and of the random networks at its latency (mean and range over
seeds and networks), and the difference to the median random network."""
import csv
import statistics
import sys
from collections import defaultdict

# a rerun appends the networks it finds trained again: the last line of each network counts
latest = {}
for r in csv.DictReader(open(sys.argv[1]), delimiter="\t"):
    latest[(r["dataset"], r["setting"], r["mode"], r["network"], r["seed"])] = r
rows = list(latest.values())
groups = defaultdict(lambda: {"searched": [], "random": [], "ms": {}, "ref": defaultdict(list)})
for r in rows:
    key = (r["dataset"], r["setting"], r["mode"])
    g = groups[key]
    top1 = float(r["top1"])
    if r["setting"] == "recipe":
        g["ref"][r["network"]].append(top1)
    elif r["network"] == "searched":
        g["searched"].append(top1)
    else:
        g["random"].append(top1)
    g["ms"].setdefault(r["network"], r["predicted_ms"])


def span(v):
    return f"{statistics.mean(v):.1f} ({min(v):.1f}–{max(v):.1f}, n={len(v)})" if v else "–"


print("| dataset | setting | mode | predicted ms (searched) | searched top-1 | random top-1 at ±5% | searched − median random |")
print("|---|---|---|---|---|---|---|")
for (ds, setting, mode), g in sorted(groups.items()):
    if setting == "recipe":
        continue
    diff = "–"
    if g["searched"] and g["random"]:
        diff = f"{statistics.mean(g['searched']) - statistics.median(g['random']):+.1f}"
    print(f"| {ds} | {setting} | {mode} | {float(g['ms'].get('searched', 'nan')):.4f} | {span(g['searched'])} | {span(g['random'])} | {diff} |")
print()
print("Recipe check (hand designs):")
print()
for (ds, setting, mode), g in sorted(groups.items()):
    if setting != "recipe":
        continue
    for name, v in sorted(g["ref"].items()):
        print(f"- {ds} {name} ({g['ms'].get(name, '?')} ms): top-1 {span(v)}")
