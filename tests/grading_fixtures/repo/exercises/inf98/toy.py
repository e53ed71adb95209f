import time


def add(a, b):
    return a + b


def mul(a, b):
    raise NotImplementedError("inf98: implement mul")


def sub(a, b):
    return abs(a - b)           # the bug: wrong whenever b > a


def wait_ready():
    while True:                 # never returns
        time.sleep(3600)
