@flow(name="a/b")
def bad_name(): pass

@flow
def reserved(return_state: int, wait_for: int): pass

@flow(name=NAME)
def dynamic(x=compute()): pass
