"""Shared fixtures: a synthetic MMLU-format data set on disk and a tiny Llama saved offline."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny models gain nothing from intra-op threads, and on a shared 2-core machine OpenMP
    # spin-waiting makes each small matmul ~100x slower; restore the setting afterwards.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def splits():
    from interp.landscape.synthetic import make_synthetic_mcq

    return make_synthetic_mcq(n_subjects=3, n_test=16, n_dev=5, n_validation=8, seed=0)


@pytest.fixture(scope="session")
def data_dir(splits, tmp_path_factory):
    from interp.landscape.synthetic import write_synthetic_mcq

    return write_synthetic_mcq(tmp_path_factory.mktemp("mcq"), splits)


@pytest.fixture(scope="session")
def model_dir(splits, tmp_path_factory):
    from interp.landscape.synthetic import build_tiny_model

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", splits, hidden_size=32, n_layers=3, seed=0)
    finally:
        torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tokenizer(splits):
    from interp.landscape.synthetic import make_mcq_tokenizer

    return make_mcq_tokenizer([r for v in splits.values() for r in v])
