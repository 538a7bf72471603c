"""Shared test settings: deterministic seeds, GPU tests skipped cleanly without a GPU, and the ``one_thread``
fixture that modules of small sparse or tiny-model tests opt into."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def one_thread():
    """Run a test on one intra-op thread and restore the setting afterwards.

    Small sparse operations and tiny models gain nothing from a second thread, and on a shared 2-core machine a
    descheduled OpenMP thread stalls every parallel region (the E-3DSNN training test ran ~20x slower with two).
    A module opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
