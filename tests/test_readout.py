"""lab.readout: the notebooks' ratios in words (never 'speed-up 0.00x')."""
from lab.readout import speedup_text


def test_speedup_text_reads_small_and_large_ratios_in_words():
    assert speedup_text(0.0092) == "109x slower"
    assert speedup_text(0.17) == "5.88x slower"
    assert speedup_text(1.001) == "as fast"
    assert speedup_text(3.456) == "3.46x faster"
    assert speedup_text(12.34) == "12.3x faster"
    assert "not a positive number" in speedup_text(0.0) and "not a positive number" in speedup_text(float("nan"))
