"""Shared set-up for the binding's tests.

The tests import the package from the source tree (python/) and the library
from MOE_LIBRARY (ctest sets it to the libmoe.so it built). Random data is
fresh every run; the seed is printed in the header and can be replayed with
MOE_TEST_SEED=<seed>.
"""

import os
import sys
import zlib

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, os.pardir, os.pardir))
sys.path.insert(0, os.path.join(REPO, "python"))
sys.path.insert(0, HERE)

_env_seed = os.environ.get("MOE_TEST_SEED")
SEED = int(_env_seed, 0) if _env_seed else int.from_bytes(os.urandom(4),
                                                           "little")


def pytest_report_header(config):
    return "moe binding tests: MOE_TEST_SEED=%d  MOE_LIBRARY=%s" % (
        SEED, os.environ.get("MOE_LIBRARY", "(unset)"))


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: takes seconds (pip install); deselect with "
        "-m 'not slow'")
    config.addinivalue_line("markers", "gpu: needs torch with CUDA")


@pytest.fixture
def rng(request):
    """A generator seeded from the run's seed and the test's name."""
    return np.random.default_rng([SEED, zlib.crc32(request.node.nodeid.encode())])


@pytest.fixture(scope="session")
def seed():
    """The run's seed (MOE_TEST_SEED to replay)."""
    return SEED


@pytest.fixture(scope="session")
def repo_root():
    return REPO
