from prefect import flow

@flow
def mod_min(x: int = (-9223372036854775807 - 1) % -1, y: int = -7 % 3, z: int = 7 % -3, w: int = -7 // 2):
    pass
