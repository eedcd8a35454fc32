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


# ----------------------------------------------------------------------------- declared option ranges

from napari_kernelgan.constraints import Interval, Options  # noqa: E402


def _outside(c) -> object:
    """A value just outside constraint ``c``."""
    if isinstance(c, Options):
        return "no-such-choice"
    step = 1 if c.type is int else 0.5
    if c.low is not None:
        return c.type(c.low) if c.closed in ("right", "neither") else c.type(c.low - step)
    return c.type(c.high) if c.closed in ("left", "neither") else c.type(c.high + step)


def _inside(c, default: object) -> object:
    """A value inside constraint ``c``: the default where it is one, else one next to a bound."""
    if default is not None:
        return default
    if isinstance(c, Options):
        return c.values[0]
    step = 1 if c.type is int else 0.5
    if c.low is not None:
        return c.type(c.low) if c.closed in ("both", "left") else c.type(c.low + (step if c.high is None else
                                                                                  min(step, (c.high - c.low) / 2)))
    return c.type(c.high) if c.closed in ("both", "right") else c.type(c.high - step)


def _declared() -> list:
    return [pytest.param(spec, key, id=f"{spec.name}.{key}") for registry in (ESTIMATORS, SR_METHODS)
            for spec in registry.specs() for key in spec.ranges]


@pytest.mark.parametrize(("spec", "key"), _declared())
def test_a_value_outside_its_declared_range_is_refused_with_one_message(spec: MethodSpec, key: str) -> None:
    constraint = spec.ranges[key]
    bad = _outside(constraint)
    assert bad not in constraint
    message = f"{spec.kind_label} {spec.name!r}: {key} must be {constraint.describe()}; got {bad!r}"
    with pytest.raises(BadOptionError) as info:
        spec.resolve({key: bad})
    assert str(info.value) == message
    good = _inside(constraint, spec.defaults[key])
    assert good in constraint
    assert spec.resolve({key: good})[key] == good


def test_the_range_message_reads_as_the_user_wrote_it():
    with pytest.raises(BadOptionError) as info:
        ESTIMATORS.get("edges").resolve({"quantile": 1.5})
    assert str(info.value) == "kernel estimator 'edges': quantile must be in (0, 1); got 1.5"
    with pytest.raises(BadOptionError) as info:
        SR_METHODS.get("closed-form").resolve({"iterations": "0"})  # as typed on the command line
    assert str(info.value) == "SR method 'closed-form': iterations must be an integer in [1, ∞); got 0"


def test_every_numeric_option_declares_its_range():
    missing = []
    for registry in (ESTIMATORS, SR_METHODS):
        for spec in registry.specs():
            for key in spec.defaults:
                kind = spec.value_type(key)
                if kind in (int, float) and key not in spec.ranges and key not in spec.choices:
                    missing.append(f"{spec.name}.{key}")
            for key, constraint in spec.ranges.items():
                default = spec.defaults[key]
                assert default is None or default in constraint, f"{spec.name}.{key}: default {default!r}"
    assert missing == []


def test_interval_bounds_types_and_text():
    half_open = Interval(float, 0, 1, closed="right")
    assert 0.0 not in half_open and 1e-9 in half_open and 1 in half_open and 1.0001 not in half_open
    assert str(half_open) == "(0, 1]" and half_open.describe() == "in (0, 1]"
    count = Interval(int, 1, None)
    assert 1 in count and 0 not in count and 2.0 not in count and True not in count and "3" not in count
    assert count.describe() == "an integer in [1, ∞)"
    anything = Interval(float)
    assert -1e300 in anything and float("nan") not in anything and float("inf") not in anything
    assert str(anything) == "(-∞, ∞)" and str(Interval(float, 0.25, 2.5, closed="left")) == "[0.25, 2.5)"
    assert "full" in Options("auto", "full") and "fast" not in Options("auto", "full")
    with pytest.raises(ValueError):
        Interval(float, 2, 1)
    with pytest.raises(ValueError):
        Interval(str)


def test_a_range_of_an_undeclared_option_is_a_registration_error():
    from napari_kernelgan.registry import register

    with pytest.raises(ValueError, match="ranges of options it does not take: iteratons"):
        register("typo", kind="sr_method", defaults={"iterations": 3},
                 ranges={"iteratons": Interval(int, 1, None)})(lambda: None)
    assert "typo" not in SR_METHODS
