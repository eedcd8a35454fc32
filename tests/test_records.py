"""Fitted constants are records: each written by its calibration script, loaded by the code, shipped in the wheel."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from napari_kernelgan import records

ROOT = Path(__file__).resolve().parents[1]
RECORDS = sorted(records.RECORDS_DIR.glob("*.json"))


def test_the_package_ships_the_records_the_code_loads():
    assert {p.stem for p in RECORDS} >= {"auto", "safety", "kernelnet", "edges", "confidence"}


@pytest.mark.parametrize("path", RECORDS, ids=lambda p: p.stem)
def test_every_record_was_written_by_an_existing_calibration_script(path):
    raw = json.loads(path.read_text())
    assert raw["format"] == records.FORMAT and raw["name"] == path.stem
    script = ROOT / raw["script"]
    assert raw["script"].startswith("benchmarks/") and script.is_file(), raw["script"]
    # The script's own source writes this record by name: a hand-edited record cannot name a script that doesn't.
    assert re.search(r"write_record\(\s*[\"']" + re.escape(path.stem) + r"[\"']", script.read_text()), raw["script"]
    # How it was made: the command line (that script, not a placeholder), what it ran on, and when.
    assert raw["command"].startswith(f"python {raw['script']}"), raw["command"]
    assert isinstance(raw["inputs"], dict) and raw["inputs"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", raw["date"]), raw["date"]
    assert raw["machine"] and isinstance(raw["values"], dict) and raw["values"]


def test_auto_runs_on_the_values_of_its_record():
    from napari_kernelgan.estimators import auto

    v = records.record_values("auto")
    assert {m: w for m, w in auto.PRIOR_WEIGHTS.items() if m not in auto.DECISIVE} == v["weights"]
    assert all(auto.PRIOR_WEIGHTS[m] == auto.DECISIVE_WEIGHT for m in auto.DECISIVE)
    assert v["gates"] == auto.MIN_CONFIDENCE
    fitted = (v["gain"], v["offset"], v["shrink"], v["full_trust"])
    assert fitted == (auto.GAIN, auto.OFFSET, auto.SHRINK, auto.FULL_TRUST)
    # and the defaults of the combination rule are those values, not copies of them
    defaults = auto.combine_members.__kwdefaults__
    assert (defaults["gain"], defaults["offset"], defaults["shrink"], defaults["full_trust"]) == fitted


def test_the_sr_safeguards_run_on_the_values_of_their_record():
    from napari_kernelgan.sr import _poisson, _safety

    v = records.record_values("safety")
    assert {int(s): f for s, f in v["floor_scale"].items()} == _safety.FLOOR_SCALE
    assert {int(s): f for s, f in v["ringing_scale"].items()} == _safety.RINGING_SCALE
    assert v["noise_doubt"] == _safety.NOISE_DOUBT
    assert v["step_scale"] == _poisson.STEP_SCALE
    # where it acts: the confidence floor at ×4 against ×2 is the ratio of the record's factors
    assert _safety.confidence_floor(0.0, 2, 4) / _safety.confidence_floor(0.0, 2, 2) == pytest.approx(
        v["floor_scale"]["4"] / v["floor_scale"]["2"])


def test_kernelnet_and_edges_run_on_the_values_of_their_records():
    from napari_kernelgan.estimators import edges, kernelnet

    v = records.record_values("kernelnet")
    assert {int(s): b for s, b in v["bias"].items()} == kernelnet.BIAS
    assert v["noise_bias_per_grey_level"] * 255 == kernelnet.NOISE_BIAS
    assert kernelnet.default_bias(2, 4 / 255) == pytest.approx(v["bias"]["2"] + 4 * v["noise_bias_per_grey_level"])
    assert records.record_values("edges")["sharp_quantile"] == edges.SHARP_QUANTILE


def test_the_confidence_reading_runs_on_its_record():
    from napari_kernelgan import confidence

    v = records.record_values("confidence")
    assert confidence.calibrated_scales() == sorted(int(s) for s in v["scales"])


def test_record_values_is_a_copy_the_caller_cannot_change_the_record_through():
    v = records.record_values("auto")
    v["gain"] = 99.0
    assert records.record_values("auto")["gain"] != 99.0


def test_a_missing_record_is_reported_as_a_packaging_problem():
    with pytest.raises(RuntimeError, match="missing from the package"):
        records.load_record("no-such-record")


def test_write_record_states_the_script_command_and_inputs(tmp_path):
    path = records.write_record("probe", {"x": 1.5}, script=ROOT / "benchmarks" / "calibrate_auto.py",
                                inputs={"seeds": [10, 11]}, command="python benchmarks/calibrate_auto.py --x",
                                directory=tmp_path)
    raw = json.loads(path.read_text())
    assert raw["script"] == "benchmarks/calibrate_auto.py" and raw["inputs"] == {"seeds": [10, 11]}
    assert raw["values"] == {"x": 1.5} and raw["command"] == "python benchmarks/calibrate_auto.py --x"


def test_the_records_are_in_the_built_wheel(tmp_path):
    pytest.importorskip("build")
    assert '"*.json"' in (ROOT / "pyproject.toml").read_text()
    proc = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path),
                           str(ROOT)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    with zipfile.ZipFile(next(tmp_path.glob("napari_kernelgan-*.whl"))) as zf:
        names = set(zf.namelist())
    assert {f"napari_kernelgan/records/{p.name}" for p in RECORDS} <= names
