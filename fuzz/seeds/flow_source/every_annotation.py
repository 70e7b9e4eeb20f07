"""Seed: every annotation shape and decorator form the reader knows."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Tuple, Union
from uuid import UUID

from pydantic import BaseModel, Field
from prefect import flow
import prefect


class Color(str, Enum):
    RED = "red"
    BLUE = "blue"


class Config(BaseModel):
    """Settings."""
    name: str = "x"
    retries: int = Field(default=3, ge=0, description="How often")
    nested: Optional[Dict[str, List[int]]] = None


@dataclass
class Point:
    x: float
    y: float = 0.0


@flow(name="all-types", description="desc", version="1.2.3", log_prints=True)
def all_types(
    a: int,
    b: float = 1.5,
    c: str = "s",
    d: bool = True,
    e: list[str] = ["x"],
    f: dict[str, int] = {"k": 1},
    g: tuple[int, str] = (1, "a"),
    h: Optional[int] = None,
    i: Union[int, str] = 3,
    j: Literal["a", "b", 3] = "a",
    k: dt.datetime = dt.datetime(2024, 1, 1),
    l: dt.date | None = None,
    m: dt.timedelta = dt.timedelta(days=7),
    n: Path = Path("/tmp"),
    o: UUID | None = None,
    p: Color = Color.RED,
    q: Config = Config(),
    r: Point | None = None,
    s: Any = None,
    t: List[Dict[str, Tuple[int, ...]]] = [],
    u: bytes = b"x",
    v: int = -1,
    w: float = 1e300,
    x: float = float("inf"),
    *args: int,
    kw_only: str = "kw",
    **kwargs: Any,
) -> None:
    """Flow with everything.

    Args:
        a: first
        b: second, with a long
            continuation line
        kw_only: keyword only
    """


@prefect.flow
async def async_flow(x, /, y=2, *, z: "int" = 3):
    '''Positional-only and a string annotation.'''


@flow()
def no_doc(): ...


def plain(x: int) -> int:
    return x


class Holder:
    @flow(name="method-flow")
    def method(self, n: int = 1) -> int:
        return n

    @staticmethod
    @flow
    def static(n: int = 1) -> int:
        return n


decorated = flow(plain)
named = flow(name="assigned")(plain)
