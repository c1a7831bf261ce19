"""bench-layers builds inputs with the predicted share it states, for any pattern and margin; its clocks and
--against time what they say."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from onnxpred import library_path, op, reference
from onnxpred.bench import layers, libraries
from onnxpred.bench.layers import LayerShape, layer_inputs, predictive_model
from onnxpred.bench.timing import time_sessions_in_turn
from onnxpred.cli import main
from onnxpred.errors import EXIT_INPUT, EXIT_USAGE
from onnxpred.runtime import session


@pytest.mark.parametrize("pattern, margin", [("diagonal", 0.0), ("checkerboard", 0.5), ("centre", 2.0)])
def test_layer_inputs_trigger_the_stated_share_of_windows(pattern, margin):
    layer = LayerShape("test", 8, 8, 12)  # 12x12 outputs: 16 full 3x3 windows per channel
    window, share = 3, 0.5
    x, w, b = layer_inputs(layer, window, share, pattern=pattern, margin=margin)
    model = predictive_model(layer, w, b, window, pattern=pattern, margin=margin)
    _, counters = session(model).run(None, {"X": x})
    samples = int(reference.sampling_pattern(pattern, window).sum())
    triggered = round(share * 16) * layer.out_channels
    assert counters[1] == triggered * samples  # zero_diag
    assert counters[2] == triggered * (window**2 - samples)  # predicted


class _Sleeper:
    """A stand-in session whose run takes wall-clock time but almost no CPU time."""

    def run(self, outputs, feeds):
        time.sleep(0.02)


class _Spinner:
    """A stand-in session whose run keeps the calling thread busy, its first two runs longest (as
    onnxruntime's: weights packed, then the planned buffers first touched)."""

    def __init__(self):
        self.runs = 0

    def run(self, outputs, feeds):
        seconds = 0.03 if self.runs < 2 else 0.01
        self.runs += 1
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass


def test_the_cpu_clock_counts_the_calling_threads_work_and_takes_the_minimum():
    wall_sleep, wall_spin = time_sessions_in_turn([_Sleeper(), _Spinner()], [{}], repeats=3, clock="wall")
    cpu_sleep, cpu_spin = time_sessions_in_turn([_Sleeper(), _Spinner()], [{}], repeats=3, clock="cpu")
    assert wall_sleep >= 20 and cpu_sleep < 5
    assert 10 <= cpu_spin < 20


def test_the_first_two_runs_of_each_session_are_not_timed():
    spinner = _Spinner()
    (wall_spin,) = time_sessions_in_turn([spinner], [{}], repeats=3, clock="wall")
    assert spinner.runs == 5
    assert 10 <= wall_spin < 20  # the median of three 10 ms runs: the two of 30 ms warmed it up


def test_sessions_take_turns_going_first():
    """Run after another session on the same input, a session finds it in cache: each one goes first as
    often as the others."""
    calls = []

    class Recorder:
        def __init__(self, name):
            self.name = name

        def run(self, outputs, feeds):
            calls.append((self.name, feeds["image"]))

    time_sessions_in_turn([Recorder("a"), Recorder("b"), Recorder("c")], [{"image": 0}, {"image": 1}], repeats=3)
    timed = calls[3 * 2:]  # after the warm-up runs
    rounds = [timed[i:i + 3] for i in range(0, len(timed), 3)]
    assert all(len({image for _, image in round_}) == 1 and sorted(n for n, _ in round_) == ["a", "b", "c"]
               for round_ in rounds)
    assert [round_[0][0] for round_ in rounds] == ["a", "b", "c", "a", "b", "c"]


def test_the_cpu_clock_is_refused_with_more_than_one_thread(capsys):
    assert main(["bench-layers", "--clock", "cpu", "--threads", "1,2"]) == EXIT_USAGE
    assert "--clock cpu needs --threads 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench-layers", "--clock", "gpu"])


@pytest.mark.parametrize("contents, message", [(None, "no such file"), (b"not ELF", "not an onnxpred op library")])
def test_against_refuses_what_is_not_an_op_library(tmp_path, capsys, contents, message):
    library = tmp_path / "lib.so"
    if contents is not None:
        library.write_bytes(contents)
    assert main(["bench-layers", "--against", str(library)]) == EXIT_INPUT
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def library_without_the_int8_op(tmp_path, monkeypatch) -> Path:
    """A copy of the installed library that the --against probes take for a build from before
    PredictiveQLinearConv: its int8 probe fails as onnxruntime fails on an unregistered op."""
    copy = tmp_path / "float-only.so"
    shutil.copyfile(library_path(), copy)
    probe = libraries._run_probe

    def float_only(library, x, op_type, *args):
        if op_type == op.QLINEAR_OP_TYPE and library == str(copy.resolve()):
            raise RuntimeError(f"Fatal error: {op.DOMAIN}:{op_type}(-1) is not a registered function/op")
        return probe(library, x, op_type, *args)

    monkeypatch.setattr(libraries, "_run_probe", float_only)
    return copy


def test_against_a_build_without_the_int8_op_times_float_layers_only(tmp_path, capsys, monkeypatch):
    """An older build still answers for the float kernels; int8 layers need this version's NHWC int8 op."""
    float_only = library_without_the_int8_op(tmp_path, monkeypatch)
    arguments = ["bench-layers", "--models", "resnet18", "--layer", "layer4.0", "-k", "2", "--shares", "0.5",
                 "--clock", "cpu", "--repeats", "1", "--against", str(float_only)]
    assert main(arguments) == 0
    assert capsys.readouterr().out.splitlines()[-1].split()[1] == "layer4.0.conv1"
    assert main([*arguments, "--int8"]) == EXIT_INPUT
    err = capsys.readouterr().err.strip()
    assert "an op library without this version's channels-last PredictiveQLinearConv" in err and "\n" not in err


def library_copy_mapped_while_timing(tmp_path, monkeypatch, module) -> tuple[Path, list[bool]]:
    """A copy of the installed library at another path (loaded again, as a second build would be), and a
    list that gets, each time ``module`` times its sessions, whether the copy is mapped into this process."""
    copy = tmp_path / "copy.so"
    shutil.copyfile(library_path(), copy)
    mapped = []

    def timed(sessions, *args):
        mapped.append(str(copy) in Path("/proc/self/maps").read_text())
        return time_sessions_in_turn(sessions, *args)

    monkeypatch.setattr(module, "time_sessions_in_turn", timed)
    return copy, mapped


def timed_session_outputs(monkeypatch, module) -> list[list[list[str]]]:
    """A list that gets, each time ``module`` times its sessions, each session's output names."""
    outputs = []

    def timed(sessions, *args):
        outputs.append([[output.name for output in s.get_outputs()] for s in sessions])
        return time_sessions_in_turn(sessions, *args)

    monkeypatch.setattr(module, "time_sessions_in_turn", timed)
    return outputs


@pytest.mark.parametrize("int8", [False, True])
def test_layers_are_timed_as_deployed_without_their_counters(monkeypatch, int8):
    """A deployed model reads no counters, and the kernels skip counting then: the timed sessions have no
    counters output, and the MACs still come from one that has."""
    timed_outputs = timed_session_outputs(monkeypatch, layers)
    timing = layers.time_layer(LayerShape("test", 64, 64, 12), window=3, share=0.5, threads=1, repeats=1,
                               int8=int8, against=str(library_path()))
    assert timed_outputs == [[["Y"], ["Y"], ["Y"]]]
    assert 0 < timing.macs_executed < timing.macs_dense and timing.predicted_share > 0.2


def test_against_times_a_second_copy_of_the_library_in_turn(tmp_path, capsys, monkeypatch):
    copy, mapped_while_timing = library_copy_mapped_while_timing(tmp_path, monkeypatch, layers)
    assert main(["bench-layers", "--models", "resnet18", "--layer", "layer4", "-k", "3", "--shares", "0.5",
                 "--clock", "cpu", "--repeats", "3", "--against", str(copy)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "clock cpu" in lines[0] and str(copy) in lines[1]
    assert lines[2].split()[-2:] == ["ms", "ratio"]
    rows = [line.split() for line in lines[4:]]
    assert [row[1] for row in rows] == ["layer4.0.conv1", "layer4"] and all(row[6] == "1" for row in rows)
    for row in rows:
        predictive_ms, against_ms, ratio = float(row[8]), float(row[-2]), float(row[-1])
        assert ratio == pytest.approx(against_ms / predictive_ms, rel=0.05) and 0.5 < ratio < 2
    assert mapped_while_timing == [True, True]  # its own mapping beside the installed library's
