"""docs/forward.md keeps up with the code: every output, format and setting is documented."""

from __future__ import annotations

import dataclasses

from conftest import ROOT

from auditsink.forward.base import FORMATS, OUTPUTS, output_class

PAGE = (ROOT / "docs" / "forward.md").read_text()


def test_every_output_and_format_has_a_section() -> None:
    for name in OUTPUTS:
        if name != "blackhole":  # the benchmarks' baseline, named in the common settings
            assert f"### {name}\n" in PAGE, name
    for name in FORMATS:
        assert f"### {name}\n" in PAGE, name


def test_every_setting_is_named() -> None:
    for name in OUTPUTS:
        for field in dataclasses.fields(output_class(name).config_class):
            assert f"`{field.name}`" in PAGE or f"{field.name}:" in PAGE, (name, field.name)
