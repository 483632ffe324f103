"""The package surface: registration, schemas, lookup, and no Lightning import."""

from __future__ import annotations

import subprocess
import sys

import jsonschema
import pytest

import glmkit.tools as tools
from glmkit.registry import RegistryError
from glmkit.tools.base import TOOLS, ToolContext, object_schema

EXPECTED = {
    "crop_image",
    "draw_image_bounding_boxes",
    "draw_image_point_markers",
    "draw_image_geometry",
    "draw_image_3d_bounding_boxes",
    "draw_video_objects_tracking",
    "load_image_from_url",
    "read_webpage",
    "python",
    "search_web_text",
    "search_web_by_image",
    "search_images",
}


def test_every_tool_is_registered_under_its_own_name():
    assert set(TOOLS.names()) >= EXPECTED
    for name in EXPECTED:
        assert tools.get_tool(name).name == name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_schema_is_openai_function_format_and_valid_json_schema(name):
    schema = tools.get_tool(name).schema()
    assert schema["type"] == "function"
    fn = schema["function"]
    assert fn["name"] == name and len(fn["description"]) > 20
    params = fn["parameters"]
    jsonschema.Draft202012Validator.check_schema(params)
    assert params["type"] == "object" and params["additionalProperties"] is False
    assert set(params["required"]) <= set(params["properties"])


def test_get_tool_suggests_close_names_on_typo():
    with pytest.raises(RegistryError, match="crop_image"):
        tools.get_tool("crop_imag")


def test_default_tools_all_or_selected():
    everything = tools.default_tools()
    assert {t.name for t in everything} >= EXPECTED
    picked = tools.default_tools(["python", "crop_image"])
    assert [t.name for t in picked] == ["python", "crop_image"]
    assert [s["function"]["name"] for s in tools.tool_schemas(picked)] == ["python", "crop_image"]


def test_arguments_are_validated_before_the_tool_runs(context):
    result = tools.get_tool("crop_image")({"image": "img_0", "bbox": [1, 2, 3]}, context)
    assert not result.ok and "bbox" in result.error
    result = tools.get_tool("crop_image")({"image": "img_0", "bbox": [0, 0, 10, 10], "zoom": "2"}, context)
    assert not result.ok and "zoom" in result.error
    result = tools.get_tool("crop_image")({"image": "img_0", "bbox": [0, 0, 10, 10], "colour": 1}, context)
    assert not result.ok and "colour" in result.error


def test_nan_and_infinity_are_refused_wherever_they_hide(context):
    """json.loads accepts NaN and Infinity, and JSON Schema's numeric bounds let NaN through."""
    from PIL import Image

    context.images["img_0"] = Image.new("RGB", (64, 64))
    crop = tools.get_tool("crop_image")
    bad = crop({"image": "img_0", "bbox": [0, 0, 500, 500], "zoom": float("nan")}, context)
    assert not bad.ok and "invalid argument zoom: NaN and infinity are not allowed" in bad.error
    nested = crop({"image": "img_0", "bbox": [0, 0, float("inf"), 500]}, context)
    assert not nested.ok and "invalid argument bbox.2" in nested.error
    assert crop({"image": "img_0", "bbox": [0, 0, 500, 500], "zoom": 2.0}, context).ok


def test_object_schema_is_closed():
    schema = object_schema({"a": {"type": "integer"}}, required=("a",))
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid({"a": 1})
    assert not validator.is_valid({"a": 1, "b": 2})
    assert not validator.is_valid({})


def test_private_network_opt_in_is_off_by_default():
    ctx = ToolContext()
    assert ctx.allow_private_network is False
    assert ctx.network_policy is None


def test_image_ids_are_unique_after_drops_and_dropped_ids_say_so():
    from PIL import Image

    from glmkit.tools.base import ToolError

    ctx = ToolContext()
    ctx.images["img_1"] = Image.new("RGB", (1, 1))  # set directly, as a question image would be
    issued = [ctx.add_image(Image.new("RGB", (2 + i, 1))) for i in range(3)]
    assert issued == ["img_2", "img_3", "img_4"]
    ctx.drop_image("img_2")
    ctx.drop_image("img_3")
    later = [ctx.add_image(Image.new("RGB", (9, 1))) for _ in range(3)]
    assert later == ["img_5", "img_6", "img_7"]  # len(images) would have reissued img_2 and img_3
    assert len(set(issued + later)) == 6
    with pytest.raises(ToolError, match=r"image id 'img_2' is no longer available: it was dropped"):
        ctx.get_image("img_2")
    with pytest.raises(ToolError, match=r"unknown image id 'img_99'; available images: img_1, img_4"):
        ctx.get_image("img_99")


def test_tools_import_without_lightning_or_stages():
    code = (
        "import sys, glmkit.tools; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning') "
        "or m.startswith('glmkit.stages')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_tool_registries_accept_only_their_kind():
    from glmkit.registry import registry
    from glmkit.tools.search import SEARCH_PROVIDERS, SearchProvider

    assert registry("tools") is TOOLS and TOOLS.base is tools.Tool
    assert registry("search_providers") is SEARCH_PROVIDERS and SEARCH_PROVIDERS.base is SearchProvider

    class NotATool:
        name = "not_a_tool"

    with pytest.raises(RegistryError, match="not a glmkit.tools.base.Tool"):
        TOOLS.register("not_a_tool")(NotATool)
    with pytest.raises(RegistryError, match="SearchProvider"):
        SEARCH_PROVIDERS.register("not_a_provider")(NotATool)
    assert "not_a_tool" not in TOOLS and "not_a_provider" not in SEARCH_PROVIDERS


def test_decoding_and_drawing_import_no_lightning():
    """The tools decode with glmkit.data's decoder and draw with its font lookup, still without Lightning."""
    code = (
        "import io, sys\n"
        "from PIL import Image\n"
        "import glmkit.tools\n"
        "from glmkit.tools.decode import decode_tool_image\n"
        "from glmkit.tools.drawing import font_for\n"
        "buf = io.BytesIO(); Image.new('RGB', (4, 4)).save(buf, 'PNG')\n"
        "assert decode_tool_image(buf.getvalue()).size == (4, 4)\n"
        "font_for((100, 100))\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_drawing_uses_the_one_font_lookup():
    from glmkit.data.fonts import load_font
    from glmkit.tools import drawing

    assert not hasattr(drawing, "load_font")  # no second copy of the fallback
    assert drawing.font_for((1000, 1000)) is load_font(30)
