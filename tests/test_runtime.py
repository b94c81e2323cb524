"""The one ORT session helper's options: threads on the cores this process may run on."""

from onnxslim import cpu, runtime

# two physical cores, each with two hyperthreads: processors 0 and 2 share core 0
SIBLINGS = "\n\n".join(
    f"processor\t: {p}\nphysical id\t: 0\ncore id\t\t: {core}"
    for p, core in enumerate([0, 1, 0, 1])
)


def test_sessions_on_every_core_use_only_the_cores_the_process_may_run_on(monkeypatch, tmp_path):
    """ORT's default thread count ignores taskset and a container's cpuset: a calibration pass
    pinned to one core ran two threads on it at 2.1x the time. One thread per physical core the
    process may run on (not per hyperthread); ORT's default where it may run on every CPU."""
    info = tmp_path / "cpuinfo"
    info.write_text(SIBLINGS)
    monkeypatch.setattr(cpu.os, "cpu_count", lambda: 4)
    for allowed, threads in (({2}, 1), ({0, 2}, 1), ({0, 1, 2}, 2), ({0, 1, 2, 3}, 0)):
        monkeypatch.setattr(cpu.os, "sched_getaffinity", lambda pid, a=allowed: a, raising=False)
        assert cpu.allowed_cores(info) == threads
    monkeypatch.setattr(runtime, "allowed_cores", lambda: 1)
    assert runtime.session_options(threads=0).intra_op_num_threads == 1
    assert runtime.session_options(threads=3).intra_op_num_threads == 3


def test_a_cpuinfo_without_core_ids_counts_each_processor(monkeypatch, tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\n\nprocessor\t: 1\n\nprocessor\t: 2\n\nprocessor\t: 3")
    monkeypatch.setattr(cpu.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(cpu.os, "sched_getaffinity", lambda pid: {1, 3}, raising=False)
    assert cpu.allowed_cores(info) == 2
    assert cpu.allowed_cores(tmp_path / "missing") == 2
