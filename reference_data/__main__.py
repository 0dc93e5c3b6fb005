"""Command line: `python -m reference_data --out DIR [...]` writes a landing zone, prints JSON."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from reference_data.generator import GeneratorConfig, generate


def _day_index(text: str) -> int | None:
    """A day index, or 'none' to switch the feature off."""
    return None if text.lower() == "none" else int(text)


def _parser() -> argparse.ArgumentParser:
    default = GeneratorConfig()
    parser = argparse.ArgumentParser(prog="python -m reference_data", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="landing directory to write")
    parser.add_argument("--seed", type=int, default=default.seed)
    parser.add_argument("--start", type=date.fromisoformat, default=default.start)
    parser.add_argument("--days", type=int, default=default.days)
    parser.add_argument("--customers", type=int, default=default.customers)
    parser.add_argument("--merchants", type=int, default=default.merchants)
    parser.add_argument("--transactions-per-day", type=int, default=default.transactions_per_day)
    parser.add_argument("--bad-record-rate", type=float, default=default.bad_record_rate)
    parser.add_argument("--duplicate-rate", type=float, default=default.duplicate_rate)
    parser.add_argument(
        "--formats",
        type=lambda text: tuple(f.strip() for f in text.split(",") if f.strip()),
        default=default.formats,
        help="comma-separated, rotated over days and tables (default: all)",
    )
    for flag, value in (
        ("--extra-column-day", default.extra_column_day),
        ("--renamed-column-day", default.renamed_column_day),
        ("--drift-start-day", default.drift_start_day),
    ):
        parser.add_argument(flag, type=_day_index, default=value, help="day index or 'none'")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = vars(parser.parse_args(argv))
    out = args.pop("out")
    try:
        config = GeneratorConfig(**args)
    except ValueError as error:
        parser.error(str(error))
    started = time.perf_counter()
    summary = generate(config, out)
    seconds = round(time.perf_counter() - started, 3)
    print(json.dumps(summary.to_dict(include_files=False) | {"seconds": seconds}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
