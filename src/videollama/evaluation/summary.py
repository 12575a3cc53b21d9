"""Aggregate verdicts into the summary: accuracy, mean judge score, per-criterion means, per-category breakdowns."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from videollama.evaluation.judge import CRITERIA, CRITERION_NAMES


def aggregate(verdicts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """{n, accuracy (0-100), mean_score (0-5), invalid, errors, criteria: {name: mean}, criteria_average}."""
    verdicts = list(verdicts)
    out: dict[str, Any] = {"n": len(verdicts)}
    correct = [bool(v["correct"]) for v in verdicts if v.get("correct") is not None]
    scores = [float(v["score"]) for v in verdicts if v.get("score") is not None]
    out["accuracy"] = round(100.0 * sum(correct) / len(correct), 2) if correct else None
    out["mean_score"] = round(sum(scores) / len(scores), 3) if scores else None
    out["invalid"] = sum(1 for v in verdicts if v.get("invalid"))
    out["errors"] = sum(1 for v in verdicts if v.get("error"))
    per: dict[str, list[float]] = {}
    for v in verdicts:
        for name, s in (v.get("scores") or {}).items():
            per.setdefault(name, []).append(float(s))
    if per:
        ordered = [c for c in CRITERIA if c in per] + sorted(set(per) - set(CRITERIA))
        out["criteria"] = {c: round(sum(per[c]) / len(per[c]), 3) for c in ordered}
        out["criteria_average"] = round(sum(out["criteria"].values()) / len(out["criteria"]), 3)
    return out


def breakdowns(keys: Iterable[str], items_verdicts: list[tuple[dict[str, str], dict[str, Any]]]) -> dict[str, Any]:
    """{key: {value: aggregate}} for each category key that some item has, values sorted by name (an item without
    the key counts as "?")."""
    out: dict[str, Any] = {}
    for key in keys:
        if not any(key in cats for cats, _ in items_verdicts):
            continue
        groups: dict[str, list[dict[str, Any]]] = {}
        for cats, verdict in items_verdicts:
            groups.setdefault(cats.get(key, "?"), []).append(verdict)
        out[key] = {value: aggregate(vs) for value, vs in sorted(groups.items())}
    return out


def _fmt(value: Any, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows shared by the console table and summary.md."""
    criteria = list((summary["metrics"].get("criteria") or {}).keys())
    header = ["subset", "n", "accuracy %", "mean score", "invalid"] + [CRITERION_NAMES.get(c, c) for c in criteria]
    if criteria:
        header.append("criteria avg")

    def row(name: str, m: dict[str, Any]) -> list[str]:
        r = [name, str(m["n"]), _fmt(m.get("accuracy"), 1), _fmt(m.get("mean_score"), 2), str(m.get("invalid", 0))]
        if criteria:
            r += [_fmt((m.get("criteria") or {}).get(c), 2) for c in criteria] + [_fmt(m.get("criteria_average"), 2)]
        return r

    rows = [row("overall", summary["metrics"])]
    for key, groups in summary.get("breakdown", {}).items():
        rows += [row(f"{key}={value}", m) for value, m in groups.items()]
    return header, rows


def to_markdown(summary: dict[str, Any]) -> str:
    header, rows = table_rows(summary)
    counts = summary["counts"]
    lines = [
        f"# {summary['task']} results", "",
        f"- model: `{summary['model']}`",
        f"- data: {', '.join(f'`{d}`' for d in summary['data'])} (sha256 `{summary['data_sha256'][:16]}...`)",
        f"- scorer: {summary['scorer']['kind']}" + (f" (`{summary['scorer'].get('model')}` at "
                                                   f"`{summary['scorer'].get('url')}`)" if summary['scorer'].get('model') else ""),
        f"- generation: `{_settings_line(summary['generation'])}`, audio: {summary['use_audio']}, frames: {summary['n_frames']}",
        f"- items: {counts['selected']} selected of {counts['in_data']} (+{counts['missing_media']} with missing media), "
        f"{counts['predicted']} predicted, {counts['scored']} scored, {counts['errors']} errors",
        f"- videollama {summary['videollama_version']}, {summary['created_at']}", "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if summary["scorer"]["kind"] == "none":
        lines += ["", "Not scored: this task needs an LLM judge (--judge-url, --judge-model)."]
    return "\n".join(lines) + "\n"


def _settings_line(g: dict[str, Any]) -> str:
    keys = ["do_sample", "max_new_tokens", "num_beams", "temperature", "top_p", "top_k", "repetition_penalty", "seed"]
    return ", ".join(f"{k}={g.get(k)}" for k in keys if k in g)


def print_summary(summary: dict[str, Any], console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    header, rows = table_rows(summary)
    table = Table(title=f"{summary['task']} - {summary['scorer']['kind']} scoring")
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i == 0 else "right")
    for r in rows:
        table.add_row(*r)
    console.print(table)
