"""The microscope's metadata as estimator options: read from OME and ImageJ files, passed only to estimators
that declare them, overridden by what a user gives, on the command line and in batch records."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from skimage import data

from napari_kernelgan import estimate_kernel
from napari_kernelgan.cli import main
from napari_kernelgan.errors import BadOptionError
from napari_kernelgan.kernel_map import estimate_kernel_map
from napari_kernelgan.optics_hints import (
    HINT_KEYS,
    OpticsHintWarning,
    check_hint,
    check_hints,
    common_hints,
    describe_hints,
    hint_problems,
    hinted_options,
    merge_hints,
    optics_hints,
)
from napari_kernelgan.physics import degrade, gaussian_kernel
from napari_kernelgan.registry import ESTIMATORS


def ome_xml(h: int, w: int, *, channels: int = 2, settings: str = '<ObjectiveSettings ID="Objective:0" '
            'RefractiveIndex="1.518"/>', objective: str = 'LensNA="1.4" Immersion="Oil" NominalMagnification="63"',
            pixels: str = 'PhysicalSizeX="65" PhysicalSizeXUnit="nm" PhysicalSizeY="0.065"') -> str:
    chans = ['<Channel ID="Channel:0:0" SamplesPerPixel="1" EmissionWavelength="520" PinholeSize="50" '
             'AcquisitionMode="LaserScanningConfocalMicroscopy"/>',
             '<Channel ID="Channel:0:1" SamplesPerPixel="1" EmissionWavelength="610"/>'][:channels]
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">
  <Instrument ID="Instrument:0"><Objective ID="Objective:0" {objective}/></Instrument>
  <Image ID="Image:0">
    <InstrumentRef ID="Instrument:0"/>
    {settings}
    <Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint8" SizeX="{w}" SizeY="{h}" SizeC="{channels}" SizeZ="1"
            SizeT="1" {pixels}>
      {''.join(chans)}
      <TiffData/>
    </Pixels>
  </Image>
</OME>"""


def blurred(size: int = 96) -> np.ndarray:
    hr = data.camera()[100:100 + 2 * size, 100:100 + 2 * size].astype(float)
    return np.clip(degrade(hr, gaussian_kernel(13, 1.2, 1.2, 0.0), 2), 0, 255).astype(np.uint8)


def write_ome(path: Path, image: np.ndarray | None = None, **xml) -> Path:
    image = blurred() if image is None else image
    channels = xml.get("channels", 2)
    stack = np.stack([image] * channels)
    tifffile.imwrite(path, stack, description=ome_xml(*image.shape, **xml).encode(), metadata=None)
    return path


ONE_AU_UM = 1.22 * 0.52 / 1.4 * 63  # the confocal pinhole of 1 AU at the pinhole, µm


def test_ome_file_gives_every_hint_per_channel(tmp_path) -> None:
    path = write_ome(tmp_path / "cells.ome.tif", np.zeros((6, 8), np.uint8))
    first = optics_hints(path)
    assert set(first) == set(HINT_KEYS)
    assert first["na"] == 1.4 and first["n_immersion"] == 1.518  # the stated index wins over the oil's 1.515
    assert first["wavelength_um"] == pytest.approx(0.52) and first["modality"] == "confocal"
    assert first["pinhole_au"] == pytest.approx(50 / ONE_AU_UM) and first["pinhole_au"] == pytest.approx(1.7513, 1e-4)
    assert first["pixel_um"] == pytest.approx(0.065)  # 65 nm in x, 0.065 µm in y
    second = optics_hints(path, channel=1)
    assert second["wavelength_um"] == pytest.approx(0.61)
    assert second["modality"] is None and second["pinhole_au"] is None  # the channel does not say
    shared = common_hints([first, second])
    assert shared["na"] == 1.4 and shared["wavelength_um"] is None and shared["pixel_um"] == pytest.approx(0.065)
    xml = ome_xml(6, 8)
    assert optics_hints(xml) == first  # the OME-XML itself


def test_immersion_from_its_name_and_nothing_guessed(tmp_path) -> None:
    water = ome_xml(6, 8, settings="", objective='LensNA="1.2" Immersion="Water"')
    got = optics_hints(water)
    assert got["n_immersion"] == 1.333 and got["na"] == 1.2
    assert got["pinhole_au"] is None  # no magnification stated: the pinhole's Airy units are unknown
    bare = ome_xml(6, 8, settings="", objective='LensNA="0.8"', pixels="")
    got = optics_hints(bare, channel=1)
    assert got == {**dict.fromkeys(HINT_KEYS), "na": 0.8, "wavelength_um": pytest.approx(0.61)}
    other = ome_xml(6, 8, settings="", objective='LensNA="0.8" Immersion="Multi"')
    assert optics_hints(other)["n_immersion"] is None
    png = tmp_path / "a.png"
    from napari_kernelgan import write_image

    write_image(png, np.zeros((8, 8), np.uint8))
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((8, 8), np.uint8))
    assert optics_hints(png) == optics_hints(plain) == dict.fromkeys(HINT_KEYS)


def test_metadata_that_cannot_be_right_is_not_used() -> None:
    aniso = ome_xml(6, 8, pixels='PhysicalSizeX="0.065" PhysicalSizeY="0.0660"')  # 1.5 % apart
    with pytest.warns(OpticsHintWarning, match=r"not square \(x 0.065 µm, y 0.066 µm, 1.5 % apart\)"):
        assert optics_hints(aniso)["pixel_um"] is None
    close = ome_xml(6, 8, pixels='PhysicalSizeX="0.065" PhysicalSizeY="0.0655"')  # 0.8 %: square enough, x taken
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert optics_hints(close)["pixel_um"] == pytest.approx(0.065)
    wrong_na = ome_xml(6, 8, objective='LensNA="14" Immersion="Oil"')
    with pytest.warns(OpticsHintWarning, match="NA 14 in the metadata is outside 0.05–1.7; not used"):
        got = optics_hints(wrong_na)
    assert got["na"] is None and got["pinhole_au"] is None and got["n_immersion"] == 1.518
    over = ome_xml(6, 8, settings="", objective='LensNA="1.4" Immersion="Water"')
    with pytest.warns(OpticsHintWarning, match=r"NA 1.4 must be below the immersion's refractive index 1.333 .*"
                                                r"its NA and immersion index are not used"):
        got = optics_hints(over)
    assert got["na"] is None and got["n_immersion"] is None
    # no immersion stated: the estimators take oil's index, which an NA of 1.6 exceeds; the NA alone is dropped
    no_medium = ome_xml(6, 8, settings="", objective='LensNA="1.6"')
    with pytest.warns(OpticsHintWarning, match=r"NA 1.6 must be below .* oil's 1.515 .*its NA is not used"):
        got = optics_hints(no_medium)
    assert got["na"] is None and got["n_immersion"] is None and got["pixel_um"] == pytest.approx(0.065)


@pytest.mark.parametrize(("unit", "resolution", "expected"), [("um", 10.0, 0.1), ("micron", 4.0, 0.25),
                                                               ("nm", 0.01, 0.1)])
def test_imagej_tiff_gives_its_pixel_size(tmp_path, unit, resolution, expected) -> None:
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, np.zeros((16, 16), np.uint16), imagej=True, resolution=(resolution, resolution),
                     metadata={"unit": unit})
    assert optics_hints(path) == {**dict.fromkeys(HINT_KEYS), "pixel_um": pytest.approx(expected)}
    uncalibrated = tmp_path / "raw.tif"
    tifffile.imwrite(uncalibrated, np.zeros((16, 16), np.uint16), imagej=True)
    assert optics_hints(uncalibrated)["pixel_um"] is None


def test_layer_metadata_gives_the_stored_hints() -> None:
    meta = {"source_file": "x.tif", "optics": {"na": 1.3, "wavelength_um": 0.6}}
    assert optics_hints(meta) == {**dict.fromkeys(HINT_KEYS), "na": 1.3, "wavelength_um": 0.6}
    assert optics_hints({"source_file": "x.png"}) == dict.fromkeys(HINT_KEYS)


def test_the_rule_declared_only_and_explicit_wins() -> None:
    declared = ESTIMATORS.get("optics").defaults
    file = {"na": 1.4, "wavelength_um": 0.52, "pixel_um": None}
    assert hinted_options(declared, {"na": 1.2}, file) == {"na": 1.2, "wavelength_um": 0.52}
    edges = ESTIMATORS.get("edges").defaults
    assert hinted_options(edges, {"na": 1.2, "quantile": 0.3}, file) == {"quantile": 0.3}
    with pytest.raises(BadOptionError, match="unknown optics hint 'numerical_aperture'"):
        hinted_options(declared, {}, {"numerical_aperture": 1.4})
    values, sources = merge_hints(file, {"na": 1.3, "modality": "confocal"})
    assert values == {"na": 1.3, "wavelength_um": 0.52, "modality": "confocal"}
    assert sources == {"na": "given", "wavelength_um": "file", "modality": "given"}
    assert describe_hints(values, sources, edges) == ["NA 1.3 given (not used)",
                                                      "emission λ 0.52 µm from the file (not used)",
                                                      "modality confocal given (not used)"]
    assert describe_hints(values, sources, declared)[1] == "emission λ 0.52 µm from the file"


def test_typed_hints_are_checked_in_the_users_terms() -> None:
    assert check_hint("wavelength_um", "0.52") == 0.52
    with pytest.raises(BadOptionError, match=r"wavelength_um='520' looks like nanometres: give micrometres "
                                             r"\(0.52 for 520 nm\)"):
        check_hint("wavelength_um", "520")
    assert check_hint("n_immersion", "Oil") == 1.515 and check_hint("n_immersion", "1.33") == 1.33
    with pytest.raises(BadOptionError, match="must be a number or an immersion"):
        check_hint("n_immersion", "honey")
    assert check_hint("modality", "Confocal") == "confocal" and check_hint("na", "") is None
    with pytest.raises(BadOptionError, match="not a modality"):
        check_hint("modality", "lightsheet")
    with pytest.raises(BadOptionError, match="outside 0.05–1.7"):
        check_hint("na", 2.5)
    with pytest.raises(BadOptionError, match="outside"):
        check_hint("pixel_um", 0)


def test_one_check_of_the_combinations_says_what_to_change() -> None:
    assert hint_problems({"na": "1.2", "n_immersion": "water", "modality": "confocal", "pinhole_au": "1"}) == []
    [water] = hint_problems({"na": "1.6", "n_immersion": "water", "wavelength_um": "0.52"})
    assert water.keys == ("na", "n_immersion")
    assert water.text("gui") == ("NA 1.6 must be below the immersion's refractive index 1.333 (NA = n sin θ): lower "
                                 "the NA, or give the immersion index for this objective")
    assert water.text("api").startswith("na=1.6 must be below the immersion's refractive index n_immersion=1.333")
    assert water.text("cli", {"na": "--na", "n_immersion": "--immersion"}).startswith(
        "--na 1.6 must be below the immersion's refractive index --immersion 1.333")
    [equal] = hint_problems({"na": 1.333, "n_immersion": 1.333})  # NA = n would need a ray at 90°
    assert equal.keys == ("na", "n_immersion")
    [oil] = hint_problems({"na": 1.6})
    assert "taken as oil's 1.515 where no immersion index is given" in oil.text("gui")
    assert hint_problems({"na": 1.45}) == []  # below oil's index: fine without an immersion
    [pinhole] = hint_problems({"modality": "widefield", "pinhole_au": 1.0})
    assert pinhole.keys == ("pinhole_au", "modality")
    assert pinhole.text("gui") == ("a pinhole (1 AU) is for a confocal, but the modality is widefield: clear the "
                                   "pinhole, or make the modality confocal")
    assert hint_problems({"modality": None, "pinhole_au": 1.0}) == []  # unknown modality: may be a confocal
    problems = hint_problems({"wavelength_um": "520", "pixel_um": "0", "na": "2.5", "n_immersion": "oil"})
    assert [p.keys for p in problems] == [("wavelength_um",), ("pixel_um",), ("na",)]
    assert problems[0].text("gui") == ("emission wavelength 520 looks like nanometres: give micrometres (0.52 for "
                                       "520 nm)")
    assert problems[1].text("gui") == ("pixel size 0 µm is outside 0.0001–10 µm, the range of a microscope's pixel "
                                       "size")
    with pytest.raises(BadOptionError, match=r"^auto: na=1.6 must be below the immersion's refractive index "
                                             r"n_immersion=1.333"):
        check_hints({"na": 1.6, "n_immersion": 1.333}, "auto")
    assert check_hints({"na": "1.4", "n_immersion": "Oil", "modality": None}) == {"na": 1.4, "n_immersion": 1.515,
                                                                                  "modality": None}


def test_auto_refuses_what_the_check_refuses() -> None:
    from napari_kernelgan.estimators._auto_optics import Hints

    with pytest.raises(BadOptionError, match="must be below the immersion's refractive index, taken as oil's 1.515"):
        Hints(na=1.6)
    with pytest.raises(BadOptionError, match=r"^auto: pinhole_au=1 is for a confocal"):
        Hints(modality="widefield", pinhole_au=1.0)
    with pytest.raises(BadOptionError, match=r"^auto: wavelength_um=610.0 looks like nanometres"):
        Hints(wavelength_um=610.0)
    assert Hints(na=1.2, n_immersion=1.333, modality="confocal", pinhole_au=1.0).given


def test_hints_reach_only_estimators_that_declare_them() -> None:
    image = blurred(64)
    hints = {"na": 1.4, "wavelength_um": 0.52, "pixel_um": 0.065, "n_immersion": 1.515}
    est = estimate_kernel(image, 2, estimator="optics", hints=hints, na=1.3, device="cpu")
    assert est.options["na"] == 1.3  # the explicit option wins
    assert est.options["wavelength_um"] == 0.52 and est.options["pixel_um"] == 0.065
    assert est.options["n_immersion"] == 1.515
    plain = estimate_kernel(image, 2, estimator="optics", device="cpu")
    assert plain.options["na"] is None and plain.options["pixel_um"] is None
    edges = estimate_kernel(image, 2, estimator="edges", hints=hints, na=1.2, device="cpu")
    assert not set(HINT_KEYS) & set(edges.options)
    bare = estimate_kernel(image, 2, estimator="edges", device="cpu")
    assert np.array_equal(edges.kernel, bare.kernel)
    field = estimate_kernel_map(image, 2, estimator="optics", hints=hints, tile=48, overlap=8, device="cpu")
    assert field.options["na"] == 1.4 and field.options["pixel_um"] == 0.065


# ----------------------------------------------------------------------------- command line and batch


@pytest.fixture(scope="module")
def ome_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_ome(tmp_path_factory.mktemp("hints") / "cells.ome.tif")


def test_estimate_reads_the_file_and_flags_override(ome_file, tmp_path, capsys) -> None:
    out = tmp_path / "k"
    assert main(["estimate", str(ome_file), "--estimator", "optics", "--out", str(out), "-q", "--per-channel",
                 "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert ("optics c0: NA 1.4 from the file, emission λ 0.52 µm from the file, immersion index 1.518 from the file, "
            "modality confocal from the file, pinhole 1.751 AU from the file, pixel size 0.065 µm from the file"
            ) in text
    assert "optics c1: NA 1.4 from the file, emission λ 0.61 µm from the file" in text
    c0 = json.loads((out / "cells_c0_kernel.json").read_text())
    c1 = json.loads((out / "cells_c1_kernel.json").read_text())
    assert c0["options"]["na"] == 1.4 and c0["options"]["wavelength_um"] == pytest.approx(0.52)
    assert c0["options"]["pinhole_au"] == pytest.approx(1.7513, 1e-4) and c0["options"]["modality"] == "confocal"
    assert c1["options"]["wavelength_um"] == pytest.approx(0.61) and c1["options"]["modality"] == "widefield"
    assert c0["optics_hints"]["na"] == {"value": 1.4, "source": "file", "used": True}
    assert main(["estimate", str(ome_file), "--estimator", "optics", "--out", str(out), "-q", "--device", "cpu",
                 "--na", "1.2", "--wavelength", "0.6", "--immersion", "water", "--modality", "widefield",
                 "--set", "pixel_um=0.08"]) == 0
    text = capsys.readouterr().out
    assert "NA 1.2 given, emission λ 0.6 µm given, immersion index 1.333 given, modality widefield given" in text
    assert "pixel size 0.065 µm from the file (not used)" in text  # --set pixel_um wins over the file
    one = json.loads((out / "cells_kernel.json").read_text())
    assert (one["options"]["na"], one["options"]["wavelength_um"], one["options"]["n_immersion"]) == (1.2, 0.6, 1.333)
    assert one["options"]["pixel_um"] == 0.08 and one["options"]["modality"] == "widefield"


def test_estimators_without_optics_options_get_none(ome_file, tmp_path, capsys) -> None:
    out = tmp_path / "k"
    assert main(["estimate", str(ome_file), "--estimator", "edges", "--out", str(out), "-q", "--na", "1.3",
                 "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "NA 1.3 given (not used)" in text and "edges takes none of them" in text
    record = json.loads((out / "cells_kernel.json").read_text())
    assert not set(HINT_KEYS) & set(record["options"])


def test_bad_flags_are_refused(ome_file, tmp_path, capsys) -> None:
    assert main(["estimate", str(ome_file), "--wavelength", "520", "--out", str(tmp_path)]) != 0
    assert "--wavelength 520 looks like nanometres: give micrometres (0.52 for 520 nm)" in capsys.readouterr().err
    assert main(["estimate", str(ome_file), "--immersion", "honey", "--out", str(tmp_path)]) != 0
    assert "--immersion honey must be a number or an immersion" in capsys.readouterr().err
    assert main(["estimate", str(ome_file), "--na", "1.4", "--immersion", "water", "--out", str(tmp_path)]) != 0
    assert ("--na 1.4 must be below the immersion's refractive index --immersion 1.333 (NA = n sin θ): lower --na, "
            "or give --immersion for this objective") in capsys.readouterr().err
    assert main(["estimate", str(ome_file), "--modality", "widefield", "--pinhole-au", "1", "--out",
                 str(tmp_path)]) != 0
    assert "--pinhole-au 1 is for a confocal, but --modality widefield" in capsys.readouterr().err


def test_batch_records_the_hints_per_file(ome_file, tmp_path, capsys) -> None:
    ij = tmp_path / "in" / "ij.tif"
    ij.parent.mkdir()
    tifffile.imwrite(ij, blurred(), imagej=True, resolution=(10.0, 10.0), metadata={"unit": "um"})
    out = tmp_path / "out"
    assert main(["batch", str(ome_file), str(ij), "--out", str(out), "--estimator", "optics", "--sr-method",
                 "bicubic", "--device", "cpu", "--modality", "widefield"]) == 0
    text = capsys.readouterr().out
    assert "optics: NA 1.4 from the file, immersion index 1.518 from the file, modality widefield given" in text
    assert "optics: modality widefield given, pixel size 0.1 µm from the file" in text
    ome = json.loads((out / "cells_manifest.json").read_text())["optics_hints"][""]
    # one kernel for both channels: their emission wavelengths differ, so none is passed
    assert "wavelength_um" not in ome and ome["modality"] == {"value": "widefield", "source": "given", "used": True}
    assert json.loads((out / "cells_kernel.json").read_text())["options"]["wavelength_um"] is None
    record = json.loads((out / "ij_kernel.json").read_text())
    assert record["options"]["pixel_um"] == pytest.approx(0.1) and record["options"]["na"] is None
    assert record["optics_hints"]["pixel_um"]["source"] == "file"
    # finished inputs are skipped on a rerun and still say their hints
    assert main(["batch", str(ome_file), str(ij), "--out", str(out), "--estimator", "optics", "--sr-method",
                 "bicubic", "--device", "cpu", "--modality", "widefield"]) == 0
    assert "pixel size 0.1 µm from the file" in capsys.readouterr().out


def test_blind_sr_uses_the_hints(ome_file, tmp_path, capsys) -> None:
    output = tmp_path / "sr.ome.tif"
    assert main(["blind-sr", str(ome_file), "--estimator", "optics", "--sr-method", "bicubic", "-o", str(output),
                 "--device", "cpu", "--no-file-optics", "--pixel-size", "0.07"]) == 0
    text = capsys.readouterr().out
    assert "optics: pixel size 0.07 µm given" in text and "from the file" not in text


def test_metadata_left_unused_is_said_and_recorded(tmp_path, capsys) -> None:
    path = write_ome(tmp_path / "rect.ome.tif", channels=1, pixels='PhysicalSizeX="0.065" PhysicalSizeY="0.07"')
    out = tmp_path / "k"
    assert main(["estimate", str(path), "--estimator", "optics", "--out", str(out), "-q", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "  note: rect.ome.tif: the pixels are not square (x 0.065 µm, y 0.07 µm, 7.1 % apart)" in text
    assert "pixel size" not in text.split("note:")[0]
    record = json.loads((out / "rect_kernel.json").read_text())
    assert record["options"]["pixel_um"] is None and "pixel_um" not in record["optics_hints"]
    assert record["optics_hints"]["notes"][0].startswith("rect.ome.tif: the pixels are not square")
