"""`python -m health_beam.load --csv FILE --target bigquery://PROJECT/DATASET`: load a
sales file into BigQuery's `sales` table (issue 24).

The file is read and validated exactly as `forecastguard load-sales` reads it
(`forecastguard.sales_io.read_sales_csv`: long or wide format, the same refusals and
limits); the rows are upserted by (product_id, sale_date) with one Parquet load and one
MERGE (`forecastguard.bigquery.upsert_frame`). Exit 0 loaded, 2 refused.
"""

from __future__ import annotations

import argparse
import json
import sys

from forecastguard import bigquery as bq
from forecastguard.config import ConfigError, Settings
from forecastguard.sales_io import SalesFileError, read_sales_csv


def main(argv: list[str] | None = None) -> None:
    """Entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", required=True, help="sales file (long or wide)")
    parser.add_argument("--target", required=True, help="bigquery://PROJECT/DATASET")
    parser.add_argument("--on-error", choices=["fail", "skip"], default="fail")
    parser.add_argument("--negative", choices=["reject", "clip", "keep"], default="reject")
    parser.add_argument("--max-units", help="default: $SALES_MAX_UNITS, else 1000000")
    parser.add_argument("--max-bytes", help="default: $SALES_MAX_BYTES, else 64 MiB")
    parser.add_argument("--bq-api-endpoint", help="BigQuery REST endpoint (an emulator)")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env(sales_max_units=args.max_units, sales_max_bytes=args.max_bytes)
        target = bq.BigQueryTarget.from_url(args.target, args.bq_api_endpoint)
        frame = read_sales_csv(
            args.csv,
            on_error=args.on_error,
            negative=args.negative,
            max_units=settings.sales_max_units,
            max_bytes=settings.sales_max_bytes,
        )
    except (SalesFileError, ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    client = target.client()
    changed = bq.upsert_frame(client, target, "sales", frame.sales, ("product_id", "sale_date"))
    print(
        json.dumps(
            {
                "rows": len(frame.sales),
                "merged": changed,
                "skipped": len(frame.problems),
                "products": int(frame.sales["product_id"].nunique()),
                "target": target.url,
            }
        )
    )


if __name__ == "__main__":
    main()
