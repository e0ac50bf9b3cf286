"""The ranks launched by these tests run with one torch thread (launch.py); the single-process
references computed in the test process must too, or BLAS blocking differs with the thread count
and "bit-identical" comparisons fail in the last ulp (seen in CI, where OMP_NUM_THREADS is unset)."""
import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)
