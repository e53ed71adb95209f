import fakelab

toy = fakelab.load("inf94")


def test_answer_matches_the_oracle():
    from lab.weights import oracle_answer
    assert toy.answer() == oracle_answer()


def test_double():
    assert toy.double(21) == 42
