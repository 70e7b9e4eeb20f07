"""Housekeeping: find caption drafts older than the retention window."""

from datetime import timedelta
from typing import Optional

from prefect import flow, get_run_logger
from prefect.variables import Variable


@flow(name="captionacc-caption-cleanup", description="Report caption drafts past the retention window.")
def cleanup_stale_captions(
    retention: timedelta = timedelta(days=7),
    dry_run: bool = True,
    batch_size: int = 100,
    retention_variable: Optional[str] = None,
) -> int:
    logger = get_run_logger()
    # The retention the project declares in prefect.yaml (`variables:`), when the deployment names it.
    if retention_variable:
        days = Variable.get(retention_variable, default=None)
        if days is not None:
            retention = timedelta(days=float(days))
    # A real run would query storage; this computes the cutoff and the batches it would process.
    cutoff_hours = retention.total_seconds() / 3600
    batches = max(1, 1000 // batch_size)
    logger.info("cutoff %.1f h, %d batches of %d (dry_run=%s)", cutoff_hours, batches, batch_size, dry_run)
    return batches


if __name__ == "__main__":
    print(cleanup_stale_captions())
