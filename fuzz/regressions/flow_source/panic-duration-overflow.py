from prefect import flow
from datetime import timedelta, timezone, datetime
from pathlib import Path

@flow
def td_neg(x: timedelta = timedelta(days=-1e300)):
    pass

@flow
def td_pos(x: timedelta = timedelta(days=1e300)):
    pass

@flow
def tz_huge(x: datetime = datetime(2020, 1, 1, tzinfo=timezone(Path("P99999999999999999999999999Y")))):
    pass

@flow
def tz_nan(x: datetime = datetime(2020, 1, 1, tzinfo=timezone(timedelta(seconds=float("nan"))))):
    pass
