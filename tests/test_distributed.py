"""``torchrun ... -m dgp_toolkit restore``, for real: ranks on 127.0.0.1 with the gloo backend,
the tiny prior as ``biggan``, every launcher killed with its ranks in ``finally``.

- two ranks on one machine (``--standalone``): every output, the one merged JSON list,
  a failing input recorded while the rank goes on, and ``--resume`` reporting it all again;
- two "machines": two launchers with ``--nnodes 2`` and a c10d rendezvous on a free port;
- a rank killed with SIGKILL: the group stops, nothing is half-written, and the same
  command with ``--resume`` finishes the rest (and an elastic restart does so by itself).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dgp_toolkit.priors.biggan.variants import ENV_EMBEDDED

from processes import kill_tree
from tiny import save_image

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 150  # seconds for one launch, on a busy 2-core machine
OUTPUTS = ("observed.png", "restored.png", "run.json")

# The identity, slowed while the file $SLOW exists; the first image of each process leaves
# a marker named after its pid, holding its rank.
SLOW_PLUGIN = """
import os
import time
from pathlib import Path

from dgp_toolkit import hookimpl
from dgp_toolkit.plugins.degradations.base import Degradation

STARTED = []


class Slow(Degradation):
    name = "slow"

    def forward(self, x):
        if not STARTED and bool(x.abs().sum() > 0):
            STARTED.append(1)
            Path(os.environ["MARKERS"], str(os.getpid())).write_text(os.environ.get("RANK", "-"))
        if os.path.exists(os.environ["SLOW"]):
            time.sleep(0.02)
        return x


@hookimpl
def register_degradations(register):
    register("slow", Slow)
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def folder(tiny_files, tmp_path):
    """Five tiny photos in ``photos/``; ``launch(*torchrun_args, *restore_args)`` starts a
    launcher there and ``finish(proc)`` waits for it, every launcher being killed with its
    ranks at the end of the test whatever happened."""
    (tmp_path / "photos").mkdir()
    for i, name in enumerate("abcde"):
        save_image(tmp_path / "photos" / f"{name}.png", seed=i)
    env = {**os.environ, ENV_EMBEDDED: str(tiny_files[0]), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    procs: list[subprocess.Popen] = []

    def launch(*args: str, extra_env: dict | None = None) -> subprocess.Popen:
        torchrun, restore = args[:args.index("restore")], args[args.index("restore"):]
        cmd = [sys.executable, "-m", "torch.distributed.run", *torchrun, "-m", "dgp_toolkit", *restore,
               "--preset", str(tiny_files[1]), "--device", "cpu", "--quiet"]
        proc = subprocess.Popen(cmd, cwd=tmp_path, env={**env, **(extra_env or {})}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        procs.append(proc)
        return proc

    def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
        return proc.returncode, stdout, stderr

    try:
        yield launch, finish
    finally:
        for proc in procs:
            if proc.poll() is None:
                kill_tree(proc.pid)  # the launcher and its ranks (each in a session of its own)
                proc.communicate(timeout=30)


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def json_list(stdout: str) -> list[dict]:
    """The one JSON list on stdout (torchrun passes the ranks' stdout through)."""
    assert stdout.count("\n[\n") + stdout.startswith("[\n") == 1, stdout
    return json.loads(stdout)


def test_two_ranks_restore_a_folder_into_one_json_list_and_resume_reports_it_again(folder, tmp_path):
    launch, finish = folder
    (tmp_path / "photos" / "broken.png").write_bytes(b"not a png")
    args = ("--standalone", "--nproc-per-node", "2", "restore", "photos", "-o", "out", "--degrade", "blur:sigma=1",
            "--simulate", "--resume", "--metrics", "m.json")
    code, stdout, stderr = finish(launch(*args))
    assert code == 1, stderr  # rank 0 exits 3 (an input failed): torchrun reports the rank's failure
    records = json_list(stdout)
    names = ["a", "b", "broken", "c", "d", "e"]
    assert [r["input"] for r in records] == [f"photos/{n}.png" for n in names]
    assert [r["error"] is None for r in records] == [n != "broken" for n in names]
    assert stderr.count("Error: photos/broken.png: is not an image file") == 1
    assert all(r["result"]["psnr"] > 0 and r["output"] == f"out/{Path(r['input']).stem}_restored.png"
               for r in records if r["error"] is None)
    assert files(tmp_path / "out") == sorted(f"{n}_{s}" for n in "abcde" for s in OUTPUTS)
    commands = {json.loads((tmp_path / "out" / f"{n}_run.json").read_text())["command"] for n in "abcde"}
    assert len(commands) == 5 and all(c.startswith("dgp-tool restore photos/") for c in commands)
    assert json.loads((tmp_path / "m.json").read_text()) == records
    mtimes = {n: (tmp_path / "out" / n).stat().st_mtime_ns for n in files(tmp_path / "out")}

    code, stdout, stderr = finish(launch(*args))  # again: the complete inputs are read back, not redone
    assert code == 1, stderr
    assert json_list(stdout) == records  # the broken input is tried again, and fails the same way
    assert {n: (tmp_path / "out" / n).stat().st_mtime_ns for n in files(tmp_path / "out")} == mtimes


def test_two_machines_share_a_folder_through_a_c10d_rendezvous(folder, tmp_path):
    launch, finish = folder
    port = _free_port()
    nodes = [launch("--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint",
                    f"127.0.0.1:{port}", "--rdzv-id", "photos", "restore", "photos", "-o", "out", "--degrade",
                    "blur:sigma=1", "--resume") for _ in range(2)]
    results = [finish(proc) for proc in nodes]
    assert [code for code, _, _ in results] == [0, 0], [err for _, _, err in results]
    [stdout] = [out for _, out, _ in results if out.strip()]  # rank 0's launcher alone prints the list
    assert [(r["input"], r["error"]) for r in json_list(stdout)] == [(f"photos/{n}.png", None) for n in "abcde"]
    assert files(tmp_path / "out") == sorted(f"{n}_{s}" for n in "abcde" for s in OUTPUTS)


def _slow_launch(launch, tmp_path, plugin_dist, *torchrun: str):
    """Two ranks on a slowed degradation, returned once both are inside an image: the
    launcher, the ranks' pids by rank, the file that slows them, the environment."""
    site = plugin_dist("dgp-slow", entry_points={"slow": "slow_plugin"}, modules={"slow_plugin": SLOW_PLUGIN})
    markers, slow = tmp_path / "markers", tmp_path / "slow"
    markers.mkdir()
    slow.touch()
    extra = {"MARKERS": str(markers), "SLOW": str(slow),
             "PYTHONPATH": os.pathsep.join([str(site), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = launch(*torchrun, "--nproc-per-node", "2", "restore", "photos", "-o", "out", "--degrade", "slow",
                  "--batch", "1", "--iterations-scale", "20", "--resume", extra_env=extra)
    deadline = time.monotonic() + TIMEOUT
    while len(list(markers.iterdir())) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    pids = {int(p.read_text()): int(p.name) for p in markers.iterdir() if p.read_text().isdigit()}
    assert sorted(pids) == [0, 1], (pids, proc.poll())
    return proc, pids, slow, extra


def _whole_or_absent(out: Path) -> None:
    present = files(out)
    for name in "abcde":
        assert [f for f in present if f.startswith(f"{name}_")] in ([], [f"{name}_{s}" for s in OUTPUTS]), present
    assert not [f for f in present if f.endswith(".tmp")]


def test_a_killed_rank_stops_the_group_and_the_same_command_with_resume_finishes(folder, tmp_path, plugin_dist):
    launch, finish = folder
    proc, pids, slow, extra = _slow_launch(launch, tmp_path, plugin_dist, "--standalone")
    os.kill(pids[1], signal.SIGKILL)
    code, stdout, stderr = finish(proc)
    assert code != 0, stderr
    stopped = json_list(stdout)  # rank 0, stopped by torchrun (SIGTERM): its image in flight is interrupted
    assert "interrupted" in [r["error"] for r in stopped] and {r["error"] for r in stopped} <= {None, "interrupted"}
    _whole_or_absent(tmp_path / "out")
    done_before = {f: (tmp_path / "out" / f).stat().st_mtime_ns for f in files(tmp_path / "out")}

    slow.unlink()  # the rerun at full speed
    code, stdout, stderr = finish(launch("--standalone", "--nproc-per-node", "2", "restore", "photos", "-o", "out",
                                         "--degrade", "slow", "--batch", "1", "--iterations-scale", "20", "--resume",
                                         extra_env=extra))
    assert code == 0, stderr
    assert [(r["input"], r["error"]) for r in json_list(stdout)] == [(f"photos/{n}.png", None) for n in "abcde"]
    assert files(tmp_path / "out") == sorted(f"{n}_{s}" for n in "abcde" for s in OUTPUTS)
    assert all((tmp_path / "out" / f).stat().st_mtime_ns == t for f, t in done_before.items())  # not redone


def test_an_elastic_restart_resumes_and_the_last_attempt_reports(folder, tmp_path, plugin_dist):
    launch, finish = folder
    proc, pids, slow, _ = _slow_launch(launch, tmp_path, plugin_dist, "--standalone", "--max-restarts", "1")
    slow.unlink()  # the restarted group at full speed
    os.kill(pids[1], signal.SIGKILL)
    code, stdout, stderr = finish(proc)
    assert code == 0, stderr
    assert [(r["input"], r["error"]) for r in json_list(stdout)] == [(f"photos/{n}.png", None) for n in "abcde"]
    assert files(tmp_path / "out") == sorted(f"{n}_{s}" for n in "abcde" for s in OUTPUTS)
