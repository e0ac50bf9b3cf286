"""One torch thread for these tests: the toy and tiny models are too small to gain from more, and
on a shared 2-core runner oversubscribed intra-op threads make them ~10x slower."""
import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
