def double(x):
    raise NotImplementedError("inf95: implement double")


def triple(x):
    raise NotImplementedError("inf95: implement triple")
