"""Turn benchmark records into a readable table, target verdicts and a JSON file.

Definitions used throughout (also in bench/README.md):
  MB/s               context bytes / median wall time, with MB = 10^6 bytes
  compression ratio  context bytes / sum of the output's layer blob sizes
  wall ratio         ocibuild median / buildah median
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

MiB = 1 << 20


def derive(bench: dict) -> dict:
    """Add the cross-tool figures and target verdicts to a benchmark record (in place)."""
    size = bench["dataset"]["bytes"]
    tools = bench["tools"]
    for t in tools.values():
        if t.get("ok_runs"):
            t["mb_per_s"] = size / 1e6 / t["median_seconds"] if size and not bench.get("baseline") else None
            t["compression_ratio"] = size / t["layer_bytes"] if size and t["layer_bytes"] else None
    b, o = tools.get(bench.get("reference", "buildah"), {}), tools.get("ocibuild", {})
    both = bool(b.get("ok_runs") and o.get("ok_runs"))
    cross = {
        "wall_ratio": o["median_seconds"] / b["median_seconds"] if both else None,
        "layer_bytes_ratio": o["layer_bytes"] / b["layer_bytes"] if both else None,
        "compression_share": (o["compression_ratio"] / b["compression_ratio"]
                              if both and o["compression_ratio"] and b["compression_ratio"] else None),
        "rss_ratio": o["maxrss_kib"] / b["maxrss_kib"] if both else None,
        "same_media_types": b.get("layer_media_types") == o.get("layer_media_types") if both else None,
    }
    targets = bench["targets"]
    ocibuild_mbps = o.get("mb_per_s")
    bench["cross"] = cross
    bench["verdicts"] = {
        "wall_ratio": _verdict(cross["wall_ratio"], targets["max_wall_ratio"], lambda v, t: v <= t),
        "mb_per_s": _verdict(ocibuild_mbps, targets["min_mb_per_s"], lambda v, t: v >= t),
        "seconds": _verdict(None if _noisy(bench, o) else o.get("median_seconds"), targets.get("max_seconds"),
                            lambda v, t: v <= t),
        "compression_share": _verdict(cross["compression_share"], targets["min_compression_share"],
                                      lambda v, t: v >= t),
        "alone_ratio": _verdict(o.get("median_alone_ratio"), targets.get("max_alone_ratio"), lambda v, t: v < t),
    }
    return bench


def _noisy(bench: dict, t: dict) -> bool:
    """A difference (baseline rows) that came out negative in some run says more about noise than the tool."""
    return bool(bench.get("baseline") and t.get("ok_runs") and t["min_seconds"] < 0)


def _verdict(value, target, ok) -> str | None:
    if target is None:
        return None
    if value is None:
        return "n/a"
    return "PASS" if ok(value, target) else "FAIL"


def table(bench: dict) -> str:
    """The block printed for one benchmark."""
    ds = bench["dataset"]
    lines = [f"== {bench['name']}: {_what(bench)} -- {bench['measures']}",
             *_how(bench),
             f"   {'tool':<9} {'median s':>9} {'min-max s':>13} {'CPU s':>7} {'MB/s':>7} {'peak RSS':>10} "
             f"{'layers':>11} {'compr.':>7}  runs"]
    for name, t in bench["tools"].items():
        lines.append("   " + _tool_row(name, t))
        if t.get("ok_runs") and len(t["step_median_seconds"]) > 1:
            steps = ", ".join(f"{k} {v:.2f} s" for k, v in t["step_median_seconds"].items())
            lines.append(f"   {'':<9} medians by step: {steps}")
        if t.get("untimed_median_seconds"):
            side = ", ".join(f"{k} {v:.2f} s" for k, v in t["untimed_median_seconds"].items())
            lines.append(f"   {'':<9} untimed builds (medians): {side}")
        if t.get("median_alone_ratio") is not None:
            lines.append(f"   {'':<9} build / sum of one-platform builds: {t['median_alone_ratio']:.2f}x "
                         f"(median; sum {t['median_alone_sum_seconds']:.2f} s)")
    lines += _cross_lines(bench)
    lines += _noise_lines(bench)
    return "\n".join(lines)


def _what(bench: dict) -> str:
    ds = bench["dataset"]
    if bench.get("pushed"):
        return f"the image of `{ds['name']}` ({ds['bytes'] / MiB:,.0f} MiB in {ds['files']:,} files)"
    return f"{ds['bytes'] / MiB:,.0f} MiB in {ds['files']:,} files"


def _how(bench: dict) -> list[str]:
    if bench.get("pushed"):
        return [f"   {bench['pushed']} (ocibuild: the layout; {bench['reference']}: the same image as oci-archive:)"]
    lines = [f"   {' + '.join(bench['dockerfile'].strip().splitlines())}"
             + (f"   [--platform {','.join(bench['platforms'])}]" if bench.get("platforms") else "")]
    if bench.get("baseline"):
        lines.append(f"   minus {' + '.join(bench['baseline'].strip().splitlines())}: median s and CPU s are "
                     "the difference of the two builds of each run")
    return lines


def _noise_lines(bench: dict) -> list[str]:
    """Warn when other work shared the machine: wall times then say more about it than about the tools."""
    loads = [r["load_before"] for t in bench["tools"].values() for r in t["runs"] if "load_before" in r]
    cpus = os.cpu_count() or 1
    if loads and max(loads) > cpus / 2:
        return [f"   WARNING: load average before runs reached {max(loads):.1f} on {cpus} CPUs: other work "
                "shared the machine, so wall times are inflated and noisy (CPU s is less affected)"]
    return []


def _tool_row(name: str, t: dict) -> str:
    runs = f"{t['ok_runs']}/{len(t['runs'])}"
    if not t.get("ok_runs"):
        return f"{name:<9} FAILED ({t.get('error', '?')[:90]})  {runs}"
    spread = f"{t['min_seconds']:.2f}-{t['max_seconds']:.2f}"
    compr = f"{t['compression_ratio']:.2f}x" if t["compression_ratio"] else "-"
    mbps = f"{t['mb_per_s']:.1f}" if t.get("mb_per_s") else "-"
    return (f"{name:<9} {t['median_seconds']:>9.2f} {spread:>13} {t['median_cpu_seconds']:>7.2f} {mbps:>7} "
            f"{t['maxrss_kib'] / 1024:>6,.0f} MiB {t['layer_bytes'] / MiB:>7,.1f} MiB {compr:>7}  {runs}")


def _cross_lines(bench: dict) -> list[str]:
    c, v, tg = bench.get("cross", {}), bench.get("verdicts", {}), bench["targets"]
    out, ref = [], bench.get("reference", "buildah")
    if c.get("wall_ratio") is not None:
        out.append(f"   ocibuild/{ref}: wall {c['wall_ratio']:.3f}x, layer bytes {c['layer_bytes_ratio']:.3f}x, "
                   f"peak RSS {c['rss_ratio']:.2f}x")
        if c["same_media_types"] is False:
            out.append("   WARNING: the tools wrote different layer media types; compression is not comparable")
    checks = [("wall_ratio", f"wall <= {tg['max_wall_ratio']}x {ref}"),
              ("seconds", f"ocibuild median <= {tg.get('max_seconds')} s"),
              ("alone_ratio", f"build < {tg.get('max_alone_ratio')}x the sum of one-platform builds"),
              ("mb_per_s", f">= {tg['min_mb_per_s']} MB/s end to end"),
              ("compression_share", f"compression ratio >= {tg['min_compression_share']:.0%} of buildah's"
               if tg["min_compression_share"] else "")]
    verdicts = [f"{label}: {v[key]}" for key, label in checks if v.get(key)]
    if verdicts:
        out.append("   targets: " + "; ".join(verdicts))
    return out


def scale_table(benches: dict[str, dict], names: tuple[str, str]) -> str | None:
    """Peak RSS of each tool at the two sizes of the scale pair, and how it grew."""
    small, large = (benches.get(n) for n in names)
    if not (small and large):
        return None
    lines = [f"== scale: peak RSS at {small['dataset']['bytes'] / MiB:,.0f} MiB vs "
             f"{large['dataset']['bytes'] / MiB:,.0f} MiB (target for ocibuild: about 1.0x)"]
    for tool in large["tools"]:
        a, b = small["tools"].get(tool, {}), large["tools"][tool]
        if a.get("ok_runs") and b.get("ok_runs"):
            lines.append(f"   {tool:<9} {a['maxrss_kib'] / 1024:,.0f} MiB -> {b['maxrss_kib'] / 1024:,.0f} MiB "
                         f"({b['maxrss_kib'] / a['maxrss_kib']:.2f}x)")
        else:
            lines.append(f"   {tool:<9} n/a (a run failed)")
    return "\n".join(lines)


def write_json(results_dir: Path, session: dict) -> Path:
    """Write `session` to results_dir/<date>.json (then <date>-2.json, ... if taken)."""
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = datetime.date.today().isoformat()
    path, n = results_dir / f"{stem}.json", 1
    while path.exists():
        n += 1
        path = results_dir / f"{stem}-{n}.json"
    path.write_text(json.dumps(session, indent=2) + "\n")
    return path
