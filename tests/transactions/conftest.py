"""Shared by the transactions tests (T-model and T-data): tiny models run on one thread.

On a 2-core machine shared with other processes, two OpenMP threads make every small op wait at a barrier
(a 64-wide GRU step goes from ~8 ms to ~1.7 s); the thread count is restored after each test.
"""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
