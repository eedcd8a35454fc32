"""``benchmarks/real_optics_benchmark.py --quick`` runs end to end (files, public API, report, JSON), and its case
generator is reproducible: the smoke test behind the real-optics report (about 15 s)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shared_data import SHARED

ROOT = Path(__file__).resolve().parents[1]
REAL_DEV = SHARED / "data" / "real_dev"
pytestmark = pytest.mark.skipif(not REAL_DEV.is_dir(), reason=f"real_dev images not found at {REAL_DEV}")


@pytest.fixture
def cases_module(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import _optics_cases

    return _optics_cases


def test_quick_run_writes_a_report_and_per_case_json(tmp_path: Path) -> None:
    out, js = tmp_path / "report.md", tmp_path / "cases.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "real_optics_benchmark.py"), "--quick",
                           "--data", str(REAL_DEV), "--out", str(out), "--json", str(js)],
                          capture_output=True, text=True, timeout=240, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(js.read_text())
    rows = data["cases"]
    assert [r["family"] for r in rows] == ["widefield", "bead_widefield"]
    for r in rows:
        # Real numbers from real runs: every output scored, the kernels compared on 41×41.
        assert 15 < r["bicubic"]["psnr"] < 60 and 15 < r["blind"]["psnr"] < 60
        assert "true" in r or "error" in r
        assert 0 <= r["l1_oracle"] <= r["l1_fixed"] + 0.01 and 0 < r["l1_auto"] < 2
        assert r["blind"]["texture"] >= 0 and 1.9 < r["fwhm_px"] < 2.7
    assert "measured" in rows[1] or "error" in rows[1]
    text = out.read_text()
    # The summary names each target once, PASS or MISS.
    assert len(data["checks"]) == 7
    for check in data["checks"]:
        assert f"| {check['target']} | {'PASS' if check['pass'] else '**MISS**'} |" in text
    assert "## Per image" in text and "autophagosomes/bead_widefield" in text


def test_cases_are_reproducible_and_built_as_documented(cases_module, tmp_path: Path) -> None:
    m = cases_module
    a = m.draw_cases(m.DEVELOPMENT[:1], seed=m.DEV_SEED, crop=64, families=("confocal", "bead_confocal"))
    b = m.draw_cases(m.DEVELOPMENT[:1], seed=m.DEV_SEED, crop=64, families=("confocal", "bead_confocal"))
    assert a == b
    case = m.build(a[1])
    again = m.build(b[1])
    assert np.array_equal(case.lr, again.lr) and np.array_equal(case.bead, again.bead)
    assert case.lr.dtype == np.uint16 and case.lr.shape == (32, 32) and case.hr.shape == (64, 64)
    assert case.bead.shape[0] == m.BEAD_PLANES and abs(case.kernel.sum() - 1) < 1e-9
    assert m.FWHM_RANGE[0] - 0.1 <= case.fwhm_px <= m.FWHM_RANGE[1] + 0.1
    files = m.write_case(case, tmp_path)
    from napari_kernelgan.measured_psf import image_pixel_size, read_psf

    assert image_pixel_size(files.lr) == pytest.approx(a[1].lr_pixel_um, rel=1e-4)
    psf = read_psf(files.bead)
    assert psf.data.shape == case.bead.shape and psf.pixel_um == pytest.approx(a[1].lr_pixel_um, rel=1e-4)
