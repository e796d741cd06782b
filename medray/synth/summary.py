"""The synthesis job's report as tables a person can read."""

from __future__ import annotations

from medray import console


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in value.items()) or "-"
    return str(value)


def print_report(report: dict) -> None:
    """Pairs, each stage's counts and reasons, pass rates, and the SFT set written."""
    console.key_values("Pairs", report["pairs"])
    for name, counts in report["stages"].items():
        shown = {k: (len(v) if k == "items_without_pass" else v) for k, v in counts.items()
                 if k not in ("graph", "paths", "per_expert", "failed_starts")}
        console.key_values(f"Stage {name}", {k: _fmt(v) for k, v in shown.items()})
    kgqa = report["stages"].get("kgqa", {})
    if kgqa.get("per_expert"):
        rows = [(expert, *(_fmt(rates.get(k)) for k in ("outcome", "reasoning", "both")))
                for expert, rates in kgqa["per_expert"].items()]
        console.table("Multi-hop QA: pass rates per expert", ("expert", "outcome", "reasoning", "both"), rows)
    console.key_values("SFT set", {"path": report["sft"]["path"], "rows": report["sft"]["rows"],
                                   "per kind": _fmt(report["sft"]["per_kind"])})
