"""torch's intra-op pool is sized before torch loads: the usable cores less one (the server's
own threads keep a core), unless the operator said otherwise."""

import subprocess
import sys

import pytest

from app.settings import Settings, limit_cpu_threads, usable_cpus


def test_the_default_leaves_one_core_for_the_server():
    env = {}
    assert limit_cpu_threads(Settings(), env) == max(1, usable_cpus() - 1)
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == str(max(1, usable_cpus() - 1))


def test_the_setting_and_the_operators_env_win():
    assert limit_cpu_threads(Settings(cpu_threads=3), {}) == 3
    assert limit_cpu_threads(Settings(cpu_threads=3), {"OMP_NUM_THREADS": "5"}) == 5


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_a_bad_thread_count_is_a_configuration_error(value):
    with pytest.raises(ValueError, match="HIGGS_CPU_THREADS"):
        Settings.from_env({"HIGGS_CPU_THREADS": value})


def test_the_cli_sizes_torch_before_loading_it(tmp_path):
    code = ("import sys, os; from app.cli import main; rc = main(['voices']); import torch; "
            "print(os.environ['OMP_NUM_THREADS'], torch.get_num_threads())")
    env = {"PATH": "/usr/bin:/bin", "HIGGS_ENGINE": "fake", "HIGGS_CPU_THREADS": "1", "PYTHONPATH": "."}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    assert out.stdout.split()[-2:] == ["1", "1"], out.stderr[-2000:]
