"""lab.paged_slots: inf31's reference BlockAllocator seen as token slots (inf30's KVAllocator interface)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from lab.paged_slots import PagedSlots

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def allocator_class():
    path = ROOT / "solutions" / "inf31" / "block_allocator.py"
    if not path.is_file():
        pytest.skip("needs solutions/inf31 (not in the student release)")
    spec = importlib.util.spec_from_file_location("_inf31_block_allocator", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.BlockAllocator


def test_slots_are_counted_in_whole_blocks_and_refusals_change_nothing(allocator_class):
    slots = PagedSlots(allocator_class(4, 4))
    assert slots.num_total_slots == 16 and slots.allocate(1, 5) and slots.num_free_slots == 8
    assert slots.allocate(1, 8) and slots.num_free_slots == 8, "growing inside the held blocks takes nothing"
    assert not slots.allocate(2, 9) and slots.num_free_slots == 8 and 2 not in slots.allocator.tables
    assert slots.allocate(2, 8) and slots.num_free_slots == 0 and not slots.allocate(1, 9)
    assert slots.pending[1][0] == [slots.allocator.block_table(1)[t // 4] * 4 + t % 4 for t in range(8)]
    slots.free(1)
    slots.free(1)                                       # freeing what holds nothing is a no-op
    assert slots.num_free_slots == 8 and 1 not in slots.pending
