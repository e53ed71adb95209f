import sys


def reads_sys_modules():
    return sys.modules["csv"].reader
