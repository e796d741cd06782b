"""`medray mm ...`: phantom chest radiographs with reports, and reading paired image-report data."""

from __future__ import annotations

from typing import Optional

import typer

from medray import console as out

mm_app = typer.Typer(help="Image-text data: phantom chest radiographs with reports, paired-data readers.",
                     no_args_is_help=True)
JsonOpt = typer.Option(False, "--json", help="Print JSON instead of tables.")


@mm_app.command("phantom")
def phantom(out_dir: str = typer.Argument(..., metavar="OUT", help="Output folder, local or s3://"),
            n: int = typer.Option(..., "--n", help="Number of studies."),
            seed: int = typer.Option(0, "--seed", help="Same seed, same bytes."),
            size: int = typer.Option(224, "--size", help="Image side in pixels."),
            workers: Optional[int] = typer.Option(None, "--workers", help="Processes (default: 1 below 1,000 studies, up to 4 above)."),  # noqa: UP045
            overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT/files if it exists."),
            as_json: bool = JsonOpt) -> None:
    """Write N phantom studies (PNG + report + labels) in the MIMIC-CXR layout."""
    from medray.mm.phantom import write_phantoms

    summary = write_phantoms(n, out_dir, seed=seed, size=size, workers=workers, overwrite=overwrite)
    if as_json:
        return out.print_json(summary)
    out.key_values("Phantom studies", {k: v for k, v in summary.items() if k not in ("classes", "splits")})
    out.table("Findings per class", ("class", "studies"), summary["classes"].items())
    out.table("Splits", ("split", "studies"), summary["splits"].items())


@mm_app.command("pairs")
def pairs(root: str = typer.Argument(..., help="A MIMIC-CXR-style folder, local or s3://"),
          save: Optional[str] = typer.Option(None, "--out", help="Write pairs.parquet and rejects.parquet here."),  # noqa: UP045
          check_images: str = typer.Option("verify", "--check-images", help="verify, decode or none."),
          as_json: bool = JsonOpt) -> None:
    """Read image-report pairs and count them, with rejects by reason."""
    import collections

    from medray import storage
    from medray.mm.pairs import read_pairs

    table, rejects = read_pairs(root, check_images=check_images)
    summary = {
        "root": root,
        "pairs": table.num_rows,
        "studies": len(set(table.column("study_id").to_pylist())),
        "splits": dict(collections.Counter(table.column("split").to_pylist())),
        "rejects": dict(collections.Counter(rejects.column("reason").to_pylist())),
    }
    if save:
        storage.write_parquet(table, storage.join(save, "pairs.parquet"))
        storage.write_parquet(rejects, storage.join(save, "rejects.parquet"))
        summary["out"] = save
    if as_json:
        return out.print_json(summary)
    out.key_values("Image-report pairs", {k: v for k, v in summary.items() if k not in ("splits", "rejects")})
    out.table("Splits", ("split", "pairs"), summary["splits"].items())
    if summary["rejects"]:
        out.table("Rejects", ("reason", "count"), summary["rejects"].items())
