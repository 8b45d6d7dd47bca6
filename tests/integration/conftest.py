"""Fixtures of the integration suite.

`make_cluster` (per test) and `module_cluster_factory` (per module) build
Clusters (see shivneri_harness.py) in a temporary folder and, whatever
happens, kill every process they started at teardown.  The tail of every
process's log is printed at teardown, so pytest shows it when a test
fails, and a sanitizer report in any log fails the test.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import shivneri_harness as h  # noqa: E402


def pytest_configure(config):
    if not os.path.exists(h.BIN):
        raise pytest.UsageError("no shivneri binary at %s (set SHIVNERI_BIN)"
                                % h.BIN)


def _finish(clusters):
    bad = []
    for c in clusters:
        try:
            c.kill_all()
        finally:
            c.dump_logs()
            bad += c.sanitizer_reports()
    if bad:
        pytest.fail("sanitizer report in %s" % ", ".join(bad))


@pytest.fixture
def make_cluster(tmp_path):
    """make_cluster(**kw) -> a new Cluster in its own sub-folder."""
    clusters = []

    def make(**kw):
        d = tmp_path / ("c%d" % len(clusters))
        d.mkdir()
        c = h.Cluster(d, **kw)
        clusters.append(c)
        return c

    yield make
    _finish(clusters)


@pytest.fixture(scope="module")
def module_cluster_factory(tmp_path_factory):
    clusters = []

    def make(**kw):
        d = tmp_path_factory.mktemp("cluster")
        c = h.Cluster(d, **kw)
        clusters.append(c)
        return c

    yield make
    _finish(clusters)
