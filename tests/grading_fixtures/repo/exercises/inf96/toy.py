def square(x):
    raise NotImplementedError("inf96: implement square")


def cube(x):
    raise NotImplementedError("inf96: implement cube")
