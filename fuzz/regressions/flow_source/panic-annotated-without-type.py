from prefect import flow
from typing import Annotated


@flow
def empty_annotated(x: Annotated[()] = 1):
    pass
