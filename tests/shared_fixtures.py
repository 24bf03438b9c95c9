"""Fixtures several test files share (loaded as a plugin by tests/conftest.py).

- `portal`: the reference portal on loopback in the test's folder (`servicegate-portal serve`, a real HTTPS server
  with its own CA); a test file that needs one portal for all its tests defines its own, module-scoped.
- `modality_agent`: a running agent with the simulated modality and the test task catalog (tests.test_kill_switch
  `make_agent`, process groups), as (agent, modality state folder, task pid folder); task leftovers killed after.
- `update_agent`: a running agent enrolled at the `portal` as UPDATE_DEVICE, for the model CT-DEMO, with its virus
  patterns in `<tmp_path>/patterns` (the update tests of the agent and of the consent UI).
- `subreaper`: this process as a child subreaper, as agent.runner makes the agent; set back afterwards, so that
  the other tests' orphans are not re-parented to pytest.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent_process import AgentProcess
from tests.portal_process import PortalProcess

PR_SET_CHILD_SUBREAPER, PR_GET_CHILD_SUBREAPER = 36, 37
ModalityAgent = tuple[AgentProcess, Path, Path]  # the `modality_agent` fixture: agent, modality folder, pid folder


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[PortalProcess]:
    with PortalProcess(tmp_path / "portal") as running:
        yield running


@pytest.fixture
def modality_agent(tmp_path: Path) -> Iterator[ModalityAgent]:
    from tests.test_kill_switch import kill_leftovers, make_agent  # a test module: imported when the fixture runs

    agent, modality, pids = make_agent(tmp_path, cgroups=False)
    agent.start()
    yield agent, modality, pids
    agent.stop()
    kill_leftovers(pids)


UPDATE_DEVICE = "ct-4001"


@pytest.fixture
def update_agent(portal: PortalProcess, tmp_path: Path) -> Iterator[AgentProcess]:
    from tests.test_connection import FAST_TELEMETRY, device, enroll  # a test module: imported when the fixture runs

    process = device(tmp_path, "e" * 32, FAST_TELEMETRY + f'[updates]\nmodel = "CT-DEMO"\n'
                                                          f'virus_pattern_dir = "{tmp_path / "patterns"}"\n')
    assert enroll(process, portal, UPDATE_DEVICE).returncode == 0
    process.start()
    yield process
    process.stop()


@pytest.fixture
def subreaper() -> Iterator[None]:
    libc = ctypes.CDLL(None, use_errno=True)
    before = ctypes.c_int()
    libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(before), 0, 0, 0)
    libc.prctl(PR_SET_CHILD_SUBREAPER, ctypes.c_ulong(1), 0, 0, 0)
    yield
    libc.prctl(PR_SET_CHILD_SUBREAPER, ctypes.c_ulong(before.value), 0, 0, 0)
