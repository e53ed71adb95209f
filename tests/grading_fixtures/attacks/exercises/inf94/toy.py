def answer():
    raise NotImplementedError("inf94: implement answer")


def double(x):
    raise NotImplementedError("inf94: implement double")
