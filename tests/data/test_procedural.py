import time

import numpy as np
import pytest

from glmkit.data.procedural import (
    FREE_KINDS,
    KINDS,
    NAMED_SHAPES,
    SHAPE_COLORS,
    ProceduralImages,
    render_scene,
    shape_scene,
)


def pixels(img):
    return np.asarray(img)


def test_deterministic_in_seed_and_index():
    a, b = ProceduralImages(seed=3), ProceduralImages(seed=3)
    for i in (0, 7, 99_999):
        assert pixels(a.load(i)).tobytes() == pixels(b.load(i)).tobytes()
    assert pixels(a.load(1)).tobytes() != pixels(a.load(2)).tobytes()
    assert pixels(a.load(1)).tobytes() != pixels(ProceduralImages(seed=4).load(1)).tobytes()


def test_images_have_structure_and_variety():
    source = ProceduralImages(image_size=64)
    images = [pixels(source.load(i)) for i in range(40)]
    assert all(img.shape == (64, 64, 3) and img.dtype == np.uint8 for img in images)
    assert all(img.std() > 5 for img in images)  # never a flat frame
    assert len({img.tobytes() for img in images}) == 40


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_renders(kind):
    source = ProceduralImages(num_images=10, image_size=96, kinds=[kind])
    img = source.load(3)
    assert img.size == (96, 96) and img.mode == "RGB"
    assert pixels(img).std() > 5
    assert pixels(img).tobytes() == pixels(render_scene(0, 3, 96, (kind,))).tobytes()


def test_kinds_select_different_content():
    charts = ProceduralImages(kinds=["chart"])
    text = ProceduralImages(kinds=["text"])
    assert pixels(charts.load(0)).tobytes() != pixels(text.load(0)).tobytes()


# slow: a CPU-time budget depends on the machine, not only on the code.
@pytest.mark.slow
def test_fast_enough_for_the_cpu_quickstart():
    source = ProceduralImages()
    source.load(0)  # font cache
    start = time.process_time()  # CPU time: robust to other processes on a shared machine
    for i in range(100):
        source.load(i)
    per_image_ms = (time.process_time() - start) * 10
    assert per_image_ms < 10, f"{per_image_ms:.2f} ms per 224 image"


def test_errors():
    with pytest.raises(ValueError, match="unknown procedural kinds \\['photo'\\]; valid kinds: shapes, text"):
        ProceduralImages(kinds=["shapes", "photo"])
    with pytest.raises(ValueError, match="num_images must be >= 1"):
        ProceduralImages(num_images=0)
    with pytest.raises(ValueError, match="image_size must be >= 16"):
        ProceduralImages(image_size=8)
    with pytest.raises(IndexError, match=r"index 10 out of range \[0, 10\)"):
        ProceduralImages(num_images=10).load(10)
    assert ProceduralImages(seed=2).describe(5) == "procedural(seed=2, index=5)"


def test_small_sizes_render():
    for size in range(16, 48, 3):
        source = ProceduralImages(image_size=size)
        assert all(source.load(i).size == (size, size) for i in range(40))


def test_shapes_kind_is_the_scene_generator_with_its_defaults():
    # render_scene draws the kind first, then hands the same generator to shape_scene.
    rng = np.random.default_rng([5, 11])
    rng.integers(1)  # the kind draw of a one-kind stream
    scene = shape_scene(rng, 64)
    assert pixels(scene.image).tobytes() == pixels(render_scene(5, 11, 64, ("shapes",))).tobytes()
    assert 2 <= len(scene.shapes) <= 8 and {s.kind for s in scene.shapes} <= set(FREE_KINDS)
    assert all(s.color_name is None for s in scene.shapes)


@pytest.mark.parametrize("seed", range(6))
def test_named_scenes_have_exact_boxes_masks_and_a_unique_target(seed):
    rng = np.random.default_rng(seed)
    scene = shape_scene(
        rng,
        (300, 200),
        count=6,
        kinds=NAMED_SHAPES,
        palette=SHAPE_COLORS,
        extent=(0.1, 0.25),
        gap=6,
        background=(245, 245, 240),
        outlines=False,
        unique_first=True,
    )
    assert scene.image.size == (300, 200) and len(scene.shapes) == 6
    target = scene.shapes[0]
    assert all((s.color_name, s.kind) != (target.color_name, target.kind) for s in scene.shapes[1:])
    assert scene.labels[0] == f"{target.color_name} {target.kind}"
    image = pixels(scene.image)
    for i, shape in enumerate(scene.shapes):
        x1, y1, x2, y2 = (int(v) for v in shape.box)
        assert 4 <= x1 < x2 <= 296 and 4 <= y1 < y2 <= 196  # whole, inside the margin
        mask = pixels(scene.mask(i)) > 127
        ys, xs = np.nonzero(mask)
        # The mask fills its box exactly (a triangle's apex may round to the middle pixel).
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x1, y1, x2, y2)
        assert mask[int(scene.points[i][1]), int(scene.points[i][0])] or shape.kind == "triangle"
        # Separated shapes: every mask pixel shows the shape's own colour.
        assert (image[mask] == SHAPE_COLORS[shape.color_name]).all()
        if shape.kind == "square":
            assert mask.sum() == (x2 - x1) * (y2 - y1)
    for a in range(6):  # at least 6 px apart
        for b in range(a + 1, 6):
            ax1, ay1, ax2, ay2 = scene.boxes[a]
            bx1, by1, bx2, by2 = scene.boxes[b]
            assert ax2 + 6 <= bx1 or bx2 + 6 <= ax1 or ay2 + 6 <= by1 or by2 + 6 <= ay1
    assert sum(scene.count(k) for k in NAMED_SHAPES) == 6


def test_scene_generator_is_deterministic_and_says_what_is_wrong():
    def named(seed, **kw):
        args = {"count": 3, "kinds": NAMED_SHAPES, "palette": SHAPE_COLORS, "gap": 4, "background": (0, 0, 0)}
        return shape_scene(np.random.default_rng(seed), (120, 90), **{**args, **kw})

    a, b = named(1), named(1)
    assert pixels(a.image).tobytes() == pixels(b.image).tobytes() and a.shapes == b.shapes
    assert pixels(named(2).image).tobytes() != pixels(a.image).tobytes()
    with pytest.raises(ValueError, match="unknown kinds \\['hexagon'\\]; valid kinds: circle"):
        named(0, kinds=("circle", "hexagon"))
    with pytest.raises(ValueError, match="kinds \\['line'\\] have no box to keep apart"):
        named(0, kinds=("square", "line"))
    with pytest.raises(ValueError, match="unique_first needs a palette"):
        shape_scene(np.random.default_rng(0), 64, unique_first=True)
    with pytest.raises(RuntimeError, match="could not place 4 shapes 4 px apart on a 120x90 canvas"):
        named(0, count=40, extent=(0.4, 0.45))
