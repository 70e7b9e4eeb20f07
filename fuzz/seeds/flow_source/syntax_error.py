from prefect import flow

@flow
def broken(x: int = 1 -> int:
    return x
