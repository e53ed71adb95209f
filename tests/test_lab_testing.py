"""The lab's test aids say what they mean: raises() explains a missing refusal, not_graded() carries its
status, a stub's NotStarted is recognized by type, through exception chains."""
from __future__ import annotations

import pytest

from grading.plugin import describe_exception
from grading.tools.stubs import generate_stub
from lab.errors import NotStarted, not_started_in
from lab.outcomes import grading_status, not_graded, raises


def test_raises_passes_on_the_expected_exception_and_hands_it_over():
    with raises(ValueError, because="max_len=17 cannot hold 20 tokens", match="max_len") as caught:
        raise ValueError("KV cache full: 20 > max_len=17")
    assert "20 > max_len=17" in str(caught.value)


def test_raises_says_what_should_have_been_refused_when_nothing_was():
    with pytest.raises(AssertionError) as error:
        with raises(ValueError, because="max_len=17 cannot hold 20 tokens"):
            pass
    assert str(error.value) == ("expected ValueError because max_len=17 cannot hold 20 tokens; nothing was raised "
                                "(the input was accepted)")


def test_raises_names_the_other_exception_and_its_message():
    with pytest.raises(AssertionError) as error:
        with raises(ValueError, because="K/V of batch 2 for a cache of batch 3"):
            raise RuntimeError("The size of tensor a (2) must match the size of tensor b (3)\nmore")
    assert str(error.value) == ("expected ValueError because K/V of batch 2 for a cache of batch 3; instead it raised "
                                "RuntimeError: The size of tensor a (2) must match the size of tensor b (3)")
    with pytest.raises(AssertionError, match="with a message matching 'max_len'; the message was: ValueError: bad"):
        with raises(ValueError, because="too many tokens", match="max_len"):
            raise ValueError("bad")


def test_raises_lets_a_stub_through_as_not_started():
    with pytest.raises(NotStarted):
        with raises(ValueError, because="an empty prompt"):
            raise NotStarted("inf10: implement KVCache.update")


def test_not_graded_is_a_skip_with_its_own_status():
    with pytest.raises(pytest.skip.Exception) as skip:
        not_graded("needs a CUDA GPU")
    assert grading_status(skip.value) == "not_graded"
    assert str(skip.value) == "not graded on this hardware: needs a CUDA GPU"
    with pytest.raises(pytest.skip.Exception) as plain:
        pytest.skip("not graded on this hardware: a plain skip that only says so")
    assert grading_status(plain.value) is None          # the text alone makes nothing "not graded"


def test_stubs_raise_not_started_and_import_it():
    solution = ('"""doc"""\nimport torch\n\nfrom lab.config import ModelConfig\n\nfrom .other import helper\n\n\n'
                "def f(x):\n    \"\"\"contract\"\"\"\n    # BEGIN SOLUTION\n    return x\n    # END SOLUTION\n")
    stub = generate_stub(solution, "inf99")
    assert 'raise NotStarted("inf99: implement f")' in stub
    assert "from lab.config import ModelConfig\nfrom lab.errors import NotStarted\n\nfrom .other import helper" in stub
    namespace: dict = {}
    exec(compile(stub.replace("from .other import helper\n", ""), "<stub>", "exec"), namespace)
    with pytest.raises(NotStarted, match="inf99: implement f"):
        namespace["f"](1)


def test_not_started_is_found_through_a_chain(tmp_path):
    try:
        try:
            raise NotStarted("inf10: implement KVCache.update")
        except NotImplementedError as stub:
            raise RuntimeError("the harness could not run the step") from stub
    except RuntimeError as error:
        assert isinstance(not_started_in(error), NotStarted)
        assert describe_exception(error, tmp_path)["not_implemented"]
    assert not_started_in(ValueError("wrong")) is None


def test_the_students_code_cannot_declare_itself_not_graded(tmp_path, monkeypatch):
    from grading.plugin import _raised_in_student_code
    from lab.impl import load

    (tmp_path / "inf99").mkdir()
    (tmp_path / "inf99" / "dodge.py").write_text("from lab.outcomes import not_graded\n\n\n"
                                                 "def f():\n    not_graded('needs a CUDA GPU')\n")
    monkeypatch.setenv("LAB_IMPL", str(tmp_path))
    with pytest.raises(pytest.skip.Exception) as dodged:
        load("inf99.dodge").f()
    assert _raised_in_student_code(dodged), "a skip raised from the implementation under test must not count"
    with pytest.raises(pytest.skip.Exception) as honest:
        not_graded("needs a CUDA GPU")              # from a test (or conftest): honoured
    assert not _raised_in_student_code(honest)
