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


@pytest.fixture
def iaemu_toy_data():
    """``make(n, seed, n_real=1)`` -> IAEmu-shaped ``(theta, targets, noise_sd)``: targets ``(n, n_real, 3, 20)`` in
    standardised space whose noise grows with mu_sat, so an aleatoric head has a noise level to learn."""
    import numpy as np

    from symgym.learn.tasks.iaemu.data import PARAM_HIGH, PARAM_LOW, sample_params

    def make(n: int, seed: int, n_real: int = 1):
        rng = np.random.default_rng(seed)
        theta = sample_params(n, seed=seed)
        x = (theta - PARAM_LOW) / (PARAM_HIGH - PARAM_LOW)
        clean = np.sin(2 * x[:, None, None, :1] + np.linspace(0, 1, 20)) * np.array([1.0, 0.5, 0.2])[:, None]
        noise_sd = 0.05 + 0.5 * x[:, 6]
        y = clean + noise_sd[:, None, None, None] * rng.normal(size=(n, n_real, 3, 20))
        return theta, y.astype(np.float32), noise_sd

    return make
