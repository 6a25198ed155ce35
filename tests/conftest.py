import os

import pytest

# Several test modules train small networks; one thread each keeps the 2-core CI machine responsive.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True, scope="session")
def _single_thread_torch():
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    yield


@pytest.fixture
def sim_robot_servers():
    """``start(env_id, **kwargs)`` -> a started ``SimRobotServer`` (the rosbridge twin); all are stopped after the test."""
    from symgym.learn.deploy.twin import SimRobotServer

    servers = []

    def start(env_id: str, **kwargs):
        server = SimRobotServer(env_id, **kwargs)
        server.start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()


@pytest.fixture(scope="module")
def linear_run(tmp_path_factory):
    """A ``sac`` run directory with a hand-set linear policy (no training), shared by the ROS tests."""
    from symgym.learn.deploy.deploy import write_linear_policy_run

    return write_linear_policy_run(tmp_path_factory.mktemp("runs") / "linear")
