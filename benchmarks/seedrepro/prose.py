"""The report's prose: template sentences filled with computed values, chosen by them. Here the
decomposition's bullets and the closing paragraph; explain() gathers every part."""

from __future__ import annotations

from typing import Any

from .common import (
    CONCURRENT,
    GREENLETS,
    MB,
    ONE_PROCESS,
    SEED_SCENARIOS,
    ReportInputs,
    diff,
    ideals,
    mean,
    med,
)
from .fmt import f1, f2, more_or_less, per_scenario, short, signed, value_range
from .matrix_prose import matrix_findings, matrix_prose
from .why import why_allocator, why_memory, why_time


def _column(deco: dict[str, dict[str, Any]], key: str) -> dict[str, Any]:
    return {s: row[key] for s, row in deco.items()}


def _spread_note(data: dict[str, Any], deco: dict[str, dict[str, Any]]) -> str:
    """Name the approaches whose retained RSS varies a lot between runs: a median hides it."""
    reference = data["matrix"].get(("glibc", "bytes"), {})
    wide = []
    for scenario in deco:
        fig = data["seed"].get(scenario) or reference.get(scenario)
        retained = fig and fig.get("retained")
        if retained and retained["max"] - retained["min"] > 10:
            wide.append(f"{short(scenario)} {retained['min']:.1f}-{retained['max']:.1f} MB")
    if not wide:
        return ""
    return (
        " Retained is not stable from run to run for "
        + ", ".join(wide)
        + " (min-max over runs): the same worker sometimes keeps the freed data and sometimes "
        "returns it by itself, so its median can land on either side."
    )


def _baseline_and_excess(
    data: dict[str, Any], d: dict[str, dict[str, Any]], n: dict[str, Any]
) -> list[str]:
    p = data["params"]
    floor_conc = min(p["workers"], p["subtasks"]) * p["size_mb"]
    pt, ps, gt, gg = (d[s] for s in SEED_SCENARIOS)
    one = [d[s] for s in ONE_PROCESS if s in d]
    n["baseline_prefork_minus_gevent"] = diff(
        ps["baseline"], mean([gt["baseline"], gg["baseline"]])
    )
    n["baseline_pss_prefork_minus_gevent"] = diff(
        ps["baseline_pss"], mean([gt["baseline_pss"], gg["baseline_pss"]])
    )
    n["baseline_prefork_rss_minus_pss"] = mean(
        [pt["rss_minus_pss_baseline"], ps["rss_minus_pss_baseline"]]
    )
    n["baseline_gevent_rss_minus_pss"] = mean(
        [gt["rss_minus_pss_baseline"], gg["rss_minus_pss_baseline"]]
    )
    one_text = (
        ", and the one-process "
        + " and ".join(f"{short(s)} at {f1(d[s]['baseline'])} MB" for s in ONE_PROCESS if s in d)
        if one
        else ""
    )
    gevent_excess = mean([gt["excess"], gg["excess"]])
    n["excess"] = _column(d, "excess")
    like_prefork = one and all(
        abs((x["excess"] or 0) - (pt["excess"] or 0))
        < abs((x["excess"] or 0) - (gevent_excess or 0))
        for x in one
    )
    return [
        f"- **Baseline.** The idle prefork tree ({'/'.join(map(str, ps['processes']))} processes: "
        f"main + pool child) is {value_range([pt['baseline'], ps['baseline']])} MB RSS; the idle "
        f"gevent worker (1 process) {value_range([gt['baseline'], gg['baseline']])} MB{one_text}. "
        f"The second process adds {f1(n['baseline_prefork_minus_gevent'])} MB to prefork's RSS "
        f"sum but {f1(n['baseline_pss_prefork_minus_gevent'])} MB to its PSS sum: "
        f"{f1(n['baseline_prefork_rss_minus_pss'])} MB of prefork's idle RSS sum exceeds its "
        f"PSS (pages the parent and child share, counted in both), against "
        f"{f1(n['baseline_gevent_rss_minus_pss'])} MB for gevent (pages it shares with other "
        "processes on the machine; which ones is not broken down here).",
        f"- **Excess.** Over the floor ({floor_conc:g} MB concurrent, {p['size_mb']:g} MB "
        "sequential), at the peak: "
        + per_scenario(n["excess"], f1, " MB")
        + ". With the same floor, prefork-threads's excess is "
        f"{more_or_less(diff(pt['excess'], gevent_excess) or 0.0)} than "
        "the gevent approaches' (mean of the two)"
        + (
            ", and the one-process OS-thread scenarios' "
            f"{value_range([x['excess'] for x in one])} MB is close to prefork-threads's: the "
            "excess follows the OS threads, not the pool."
            if like_prefork
            else "."
        ),
    ]


def _pss_and_hwm(d: dict[str, dict[str, Any]], n: dict[str, Any]) -> list[str]:
    pt, ps, gt, gg = (d[s] for s in SEED_SCENARIOS)
    n["peak_rss_minus_pss"] = _column(d, "rss_minus_pss_peak")
    hwm_gaps = _column(d, "hwm_sum_minus_peak")
    n["hwm_sum_minus_sampled_peak"] = hwm_gaps
    # Pages stop being shared during the task: PSS excess above RSS excess in both prefork trees.
    unshared = all((x["excess_pss"] or 0) > (x["excess"] or 0) + 0.5 for x in (pt, ps))
    return [
        "- **PSS vs RSS.** At the peak the RSS sum exceeds the PSS sum by "
        f"{value_range([pt['rss_minus_pss_peak'], ps['rss_minus_pss_peak']])} MB for the prefork "
        f"trees and {value_range([gt['rss_minus_pss_peak'], gg['rss_minus_pss_peak']])} MB for "
        f"gevent. Peak PSS: prefork-threads {f1(pt['peak_pss'])}, gevent-threads "
        f"{f1(gt['peak_pss'])}, gevent-greenlets {f1(gg['peak_pss'])}, prefork-sequential "
        f"{f1(ps['peak_pss'])} MB; counted this way prefork-threads is "
        f"{more_or_less(diff(pt['peak_pss'], mean([gt['peak_pss'], gg['peak_pss']])) or 0.0)} "
        "than gevent, against "
        f"{more_or_less(diff(pt['peak'], mean([gt['peak'], gg['peak']])) or 0.0)} "
        "by the RSS sum."
        + (
            " Prefork's excess in PSS is above its excess in RSS (prefork-threads "
            f"{f1(pt['excess_pss'])} against {f1(pt['excess'])}, prefork-sequential "
            f"{f1(ps['excess_pss'])} against {f1(ps['excess'])} MB): during the task pages "
            "stop being shared between parent and child, which raises the PSS sum but not the "
            "RSS sum."
            if unshared
            else ""
        ),
        "- **Sampled peak vs HWM sum.** HWM sum - sampled peak: "
        + per_scenario(hwm_gaps, signed, " MB")
        + ". For a one-process worker the HWM sum is the kernel's own peak, so a positive "
        "difference is what 50 ms sampling missed; for prefork it also adds the parent's and "
        "the child's peaks as if they had coincided."
        + (
            " Negative values (down to "
            f"{min(v for v in hwm_gaps.values() if v is not None):.2f} MB) mean a sampled RSS "
            "exceeded the VmHWM read after the task, which exact counters would not allow; we "
            "read differences of that size as the resolution of the two readings (not "
            "investigated further)."
            if any(v is not None and v < -0.005 for v in hwm_gaps.values())
            else ""
        ),
    ]


def _after_task(data: dict[str, Any], d: dict[str, dict[str, Any]], n: dict[str, Any]) -> list[str]:
    pt, ps = d["prefork_threads"], d["prefork_sequential"]
    lines = [
        "- **After the task.** Retained - baseline: "
        + per_scenario(_column(d, "retained_above_baseline"), signed, " MB")
        + ". Released by gc + malloc_trim (retained - trimmed): "
        + per_scenario(_column(d, "released_by_trim"), signed, " MB")
        + "."
        + _spread_note(data, d)
    ]
    trim_pss = {s: diff(d[s]["trimmed_pss"], d[s]["retained_pss"]) for s in d}
    n["trim_pss_change"] = trim_pss
    pf_trim_pss = mean([trim_pss["prefork_threads"], trim_pss["prefork_sequential"]])
    changes = (
        f"(trimmed PSS - retained PSS: prefork-threads {signed(trim_pss['prefork_threads'])}, "
        f"prefork-sequential {signed(trim_pss['prefork_sequential'])} MB)"
    )
    if pf_trim_pss is not None and pf_trim_pss > 1.0:
        lines.append(
            f"- **Trimming raised prefork's PSS** {changes} while its RSS sum moved by "
            f"{signed(diff(pt['trimmed'], pt['retained']))} and "
            f"{signed(diff(ps['trimmed'], ps['retained']))} MB: pages stopped being shared, "
            "they were not added. The release runs "
            "`gc.collect()` in the pool child before trimming; CPython's collector writes to "
            "the header of every object it scans, including those inherited from the parent "
            "(the reason `gc.freeze()` exists), which turns shared copy-on-write pages into the "
            "child's own. That is the likely cause (we did not measure which pages changed): a "
            "side effect of the trim step in a forked child, not memory the task left behind."
        )
    elif pf_trim_pss is not None:
        lines.append(
            f"- **Trimming leaves prefork's sharing alone** {changes}. The release collects only "
            "the young generations: an earlier version ran a full `gc.collect()`, which writes to "
            "the header of every object inherited from the parent and raised the prefork tree's "
            "PSS by 11-14 MB by un-sharing copy-on-write pages (tests/test_run_options.py guards "
            "it)."
        )
    return lines


def explain(inputs: ReportInputs) -> dict[str, Any]:
    """Every part of the prose, and `numbers`: each derived figure a sentence cites."""
    data, seed, deco, matrix = inputs.data, inputs.seed, inputs.deco, inputs.matrix
    p = data["params"]
    n: dict[str, Any] = {}  # every derived number a sentence cites, for summary.json
    decomposition = [
        *_baseline_and_excess(data, deco, n),
        *_pss_and_hwm(deco, n),
        *_after_task(data, deco, n),
    ]
    prose = {
        "decomposition_prose": decomposition,
        "matrix_findings": matrix_findings(
            matrix,
            inputs.arenas,
            n,
            8 * data["seed_doc"]["machine"]["cores"],
            round(p["size_mb"] * MB / 1024),
        ),
        "matrix_prose": matrix_prose(matrix, n),
        "why_prose": [
            *why_memory(data, seed, deco, n),
            *why_allocator(data, matrix, inputs.arenas, n),
            *why_time(data, seed, n),
        ],
        "paragraph": closing_paragraph(inputs, n),
    }
    return {"prose": prose, "numbers": n}


def _closeness(name: str, ratio: dict[str, Any]) -> str:
    """`our X ratio is close to / unlike the seed's (a against b)`, by a 10% band."""
    ours, theirs = ratio["ours"], ratio["seed"]
    close = ours is not None and theirs and abs(ours / theirs - 1) <= 0.10
    return (
        f"our {name} peak ratio is {'close to' if close else 'unlike'} the seed's "
        f"({f2(ours)} against {f2(theirs)})"
    )


def closing_paragraph(inputs: ReportInputs, n: dict[str, Any]) -> str:
    """The page in one paragraph: what we reproduce, the three terms, and what we cannot."""
    ours, rows, p = inputs.data["seed"], inputs.seed["rows"], inputs.data["params"]
    d = inputs.deco
    ps, gt, gg = d["prefork_sequential"], d["gevent_threads"], d["gevent_greenlets"]
    order_ours = sorted(SEED_SCENARIOS, key=lambda s: med(ours[s], "peak") or 0.0)
    order_seed = sorted(SEED_SCENARIOS, key=lambda s: rows[s]["peak_mb"])
    r = {x["ratio"]: x for x in inputs.ratios}
    main = r["prefork_threads / prefork_sequential peak"]
    gev = [r[f"{s} / prefork_sequential peak"] for s in GREENLETS]
    scale = {s: rows[s]["peak_mb"] / (med(ours[s], "peak") or 1.0) for s in SEED_SCENARIOS}
    n["seed_over_ours_peak"] = scale
    w, t, f = n["why"], n["time"], n.get("findings", {})
    os_ex = mean([d[s]["excess"] for s in ("prefork_threads", *ONE_PROCESS) if s in d])
    gl_ex = mean([gt["excess"], gg["excess"]])
    share = f.get("bytes_arena2_cut_share_of_gap_pct")
    many = w.get("prefork_threads_excess_many_minus_default_arenas_mb") or []
    many_max = max((x for x in many if x is not None), default=None)
    conc = [med(ours[s], "time") for s in CONCURRENT]
    ideal_conc, _ = ideals(p["subtasks"], p["workers"], p["time_s"])
    ours_factor = max(c for c in conc if c is not None) / ideal_conc
    ordering = " < ".join(short(s) for s in order_ours)
    sentences = [
        (
            f"Our run reproduces the seed's ordering of peak memory ({ordering})"
            if order_ours == order_seed
            else f"Our ordering of peak memory ({ordering}) differs from the seed's ("
            + " < ".join(short(s) for s in order_seed)
            + ")"
        )
        + "; "
        + _closeness("prefork-threads / prefork-sequential", main)
        + ", "
        + _closeness("gevent-threads / prefork-sequential", gev[0])
        + "; the seed's absolute figures are "
        + ", ".join(f"{scale[s]:.2f}x" for s in SEED_SCENARIOS)
        + " ours ("
        + ", ".join(short(s) for s in SEED_SCENARIOS)
        + ").",
        "Three measured terms make the shape of our table: a prefork worker idles as two "
        f"processes ({f1(ps['baseline'])} MB RSS against "
        f"{f1(mean([gt['baseline'], gg['baseline']]))} MB for one gevent process, "
        f"{f1(n['baseline_prefork_rss_minus_pss'])} MB of it shared pages that the RSS sum "
        "counts twice); the concurrent approaches hold "
        f"{w['floor_gap_mb'] + p['size_mb']:g} MB of data at once against {p['size_mb']:g} MB; "
        f"and OS threads cost more excess than greenlets ({f1(os_ex)} against {f1(gl_ex)} MB"
        + (
            f", {share:.0f}% of that gap removed by capping glibc at 2 arenas"
            if share is not None
            else ""
        )
        + ").",
        "What we cannot reproduce is the seed's idle footprint (its prefork-sequential peak is "
        f"{f1(w['seed_prefork_sequential_minus_ours_mb'])} MB above ours with "
        f"{p['size_mb']:g} MB of data held), the "
        f"{f1(w['seed_prefork_threads_minus_sequential_beyond_floor_mb'])} MB its "
        "prefork-threads row carries beyond its data (ours: "
        f"{signed(w['ours_prefork_threads_minus_sequential_excess_mb'])} MB"
        + (
            f"; allowing one arena per thread, as 8 or more cores would, added at most "
            f"{signed(many_max)} MB)"
            if many_max is not None
            else ")"
        )
        + f", and its times ({t['seed_sequential_per_subtask_s']:.2f} s per sequential "
        "subtask and "
        + "/".join(f"{x:.2f}" for x in t["seed_concurrent_per_round_s"])
        + f" s per concurrent round of {p['workers']}, against a {p['time_s']:g} s hold"
        + (
            f" that ours exceed by at most {(ours_factor - 1) * 100:.0f}%)."
            if ours_factor < 1.25
            else ")."
        ),
        "The seed's README does not give the machine, library versions, measuring method, "
        "payload or hold time that would decide them, so those differences stay unexplained "
        "rather than guessed.",
    ]
    return " ".join(sentences)
