def first():
    return 1


def crash_prone():
    return 2


def after():
    return 3
