import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


import pytest  # noqa: E402


@pytest.fixture(scope="module")
def config():
    """The repository's config.yaml."""
    from ivr.config import load_config

    return load_config(str(ROOT / "config.yaml"))


@pytest.fixture(scope="module")
def flows(config):
    """The demo hotline in flows/, loaded and checked."""
    from ivr.app import flow_repository

    return flow_repository(config).load()
