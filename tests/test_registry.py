"""Method specs, discovery and the shared option parser."""
from __future__ import annotations

import sys
import textwrap

import pytest

from napari_kernelgan.errors import BadOptionError, MethodUnavailableError
from napari_kernelgan.options import parse_assignments, parse_value
from napari_kernelgan.registry import ESTIMATORS, SR_METHODS, MethodSpec, Registry


def _spec(**defaults) -> MethodSpec:
    return MethodSpec(name="m", kind="sr_method", fn=lambda: None, defaults=defaults)


def test_resolve_merges_checks_and_coerces():
    spec = _spec(a=1, b=3.0, c=None, flag=False, mode="x")
    assert spec.resolve({"a": 2}) == {"a": 2, "b": 3.0, "c": None, "flag": False, "mode": "x"}
    resolved = spec.resolve({"a": "4", "b": "2", "flag": "true", "c": "text"})
    assert resolved["a"] == 4 and isinstance(resolved["b"], float) and resolved["flag"] is True
    assert resolved["c"] == "text"
    with pytest.raises(BadOptionError, match=r"unknown option\(s\) 'z'.*accepted options: a, b, c, flag, mode"):
        spec.resolve({"z": 1})
    with pytest.raises(BadOptionError, match="a must be a int"):
        spec.resolve({"a": "many"})
    # None for an undeclared option means "default" and is dropped.
    assert spec.resolve({"iterations": None})["a"] == 1
    assert isinstance(BadOptionError("x"), TypeError) and isinstance(BadOptionError("x"), ValueError)


def test_parse_value_and_assignments():
    assert parse_value("3") == 3 and parse_value("0.5") == 0.5 and parse_value("true") is True
    assert parse_value("none") == "none" and parse_value("None") is None and parse_value("fast") == "fast"
    assert parse_assignments(["sigma=2", "preset=fast", "kernel-size=13"]) == {
        "sigma": 2, "preset": "fast", "kernel_size": 13}
    with pytest.raises(BadOptionError, match="KEY=VALUE"):
        parse_assignments(["sigma"])


def test_builtin_methods_are_registered_with_their_options():
    assert {"kernelgan", "edges"} <= set(ESTIMATORS.names())
    assert {"bicubic", "closed-form", "zssr", "usrnet"} <= set(SR_METHODS.names())
    kg = ESTIMATORS.get("kernelgan")
    assert kg.defaults["preset"] == "default" and set(kg.choices["preset"]) == {"paper", "default", "fast"}
    assert kg.main[:2] == ("preset", "iterations")
    assert SR_METHODS.get("closed-form").blind_defaults == {"sigma": 2.0}
    assert SR_METHODS.get("usrnet").weights == ("usrnet",)
    assert "kernel_x2" not in SR_METHODS.get("zssr").form_options


def test_unknown_method_lists_the_choices():
    with pytest.raises(BadOptionError, match="unknown kernel estimator 'nope'; choose one of: .*kernelgan"):
        ESTIMATORS.get("nope")


def test_broken_module_is_listed_unavailable_and_hides_nothing(tmp_path, monkeypatch):
    pkg = tmp_path / "fakepkg_methods"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "aaa_broken.py").write_text("import a_dependency_that_is_not_installed\n")
    (pkg / "zzz_good.py").write_text(textwrap.dedent("""
        from napari_kernelgan.registry import MethodSpec
        from fakepkg_methods import REG
        REG.add(MethodSpec(name="good", kind="sr_method", fn=lambda: None, module=__name__))
    """))
    (pkg / "__init__.py").write_text("from napari_kernelgan.registry import Registry\n"
                                     "REG = Registry('sr_method', ('fakepkg_methods',), 'no.such.group')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import fakepkg_methods

    reg: Registry = fakepkg_methods.REG
    assert reg.names() == ["good"]
    assert "aaa_broken" in reg.unavailable
    assert "a_dependency_that_is_not_installed" in reg.unavailable["aaa_broken"]
    assert "unavailable: aaa_broken" in reg.describe_choices()
    with pytest.raises(MethodUnavailableError, match="aaa_broken.*is unavailable.*a_dependency"):
        reg.get("aaa_broken")
    for name in [m for m in sys.modules if m.startswith("fakepkg_methods")]:
        del sys.modules[name]


def test_options_without_a_typed_default_take_their_presets_type():
    kg = ESTIMATORS.get("kernelgan")
    assert kg.value_type("iterations") is int and kg.value_type("lr_g") is float
    assert kg.resolve({"iterations": "40", "lr_g": "1e-3", "betas": "(0.9, 0.99)"})["iterations"] == 40
    with pytest.raises(BadOptionError, match="iterations must be a int"):
        kg.resolve({"iterations": "abc"})
    with pytest.raises(BadOptionError, match="crop must be a int"):
        kg.resolve({"crop": 1.5})


def test_unwritable_output_is_one_clear_error(tmp_path):
    import numpy as np

    from napari_kernelgan.errors import OutputError
    from napari_kernelgan.io import write_kernel

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot write .*k.mat"):
        write_kernel(blocker / "k.mat", np.ones((3, 3)) / 9)
