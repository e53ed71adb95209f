def scale(x, k):
    return x * k


def shift(x, d):
    return x + d
