import io
import json
import os
import pickle
import shutil
import subprocess
import tarfile

import numpy as np
import pytest
from PIL import Image

from glmkit.data.decode import BadImageError, _to_rgb, decode_image
from glmkit.data.shard_paths import expand_braces, expand_urls
from glmkit.data.sources import DATASETS, ImageFolder, JsonlManifest, TarShards
from tests.data._files import image_bytes, random_bytes, truncated_jpeg, write_image, write_shard

RED, GREEN, BLUE = (220, 20, 20), (20, 220, 20), (20, 20, 220)


def mean_colour(img: Image.Image) -> tuple[int, ...]:
    return tuple(int(round(v)) for v in np.asarray(img, dtype=np.float64).reshape(-1, 3).mean(0))


def close(a, b, tol=8):
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def test_registry_names():
    DATASETS.discover()  # built-ins in modules not imported yet (procedural) register on discovery
    assert {"image_folder", "jsonl_manifest", "tar_shards", "procedural"} <= set(DATASETS.names())
    assert DATASETS.get("tar_shards") is TarShards


# -- decoding ------------------------------------------------------------------------------------


def test_decode_image_returns_rgb_copy():
    img = decode_image(image_bytes(RED), "red")
    assert img.mode == "RGB" and img.size == (20, 16)
    assert close(mean_colour(img), RED)


def test_decode_draft_size_reduces_large_jpegs_only():
    jpeg = image_bytes(RED, size=(400, 300))
    assert decode_image(jpeg, "x").size == (400, 300)
    assert decode_image(jpeg, "x", draft_size=100).size == (200, 150)  # 1/4 would make 75 < 100
    assert decode_image(jpeg, "x", draft_size=1000).size == (400, 300)
    png = image_bytes(RED, size=(400, 300), fmt="PNG")
    assert decode_image(png, "x", draft_size=100).size == (400, 300)


def test_sources_pass_draft_size(tmp_path):
    write_image(tmp_path / "a.jpg")
    (tmp_path / "a.jpg").write_bytes(image_bytes(RED, size=(400, 300)))
    assert ImageFolder(str(tmp_path), draft_size=100).load(0).size == (200, 150)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"image": "a.jpg"}\n')
    assert JsonlManifest(str(manifest), draft_size=100).load(0).size == (200, 150)
    write_shard(tmp_path / "s.tar", {"a.jpg": image_bytes(RED, size=(400, 300))})
    assert TarShards(str(tmp_path / "s.tar"), draft_size=100).load(0).size == (200, 150)


def test_decode_composites_transparency_on_white():
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 4, 8))
    import io

    buf = io.BytesIO()
    rgba.save(buf, format="PNG")
    arr = np.asarray(decode_image(buf.getvalue(), "x"))
    assert arr[0, 0].tolist() == [0, 0, 255]
    assert arr[0, 7].tolist() == [255, 255, 255]  # transparent -> white, not black


@pytest.mark.parametrize(
    "data, reason",
    [(truncated_jpeg(), "truncated"), (random_bytes(), "cannot identify"), (b"", "cannot identify")],
    ids=["truncated", "random", "empty"],
)
def test_decode_bad_bytes_names_the_image(data, reason):
    with pytest.raises(BadImageError, match=rf"(?i)my/key\.jpg: .*{reason}"):
        decode_image(data, "my/key.jpg")


def test_decode_missing_file(tmp_path):
    missing = tmp_path / "nope.jpg"
    with pytest.raises(BadImageError, match="nope.jpg: FileNotFoundError"):
        decode_image(str(missing), str(missing))


def test_decode_refuses_decompression_bombs(monkeypatch):
    data = image_bytes(RED, size=(64, 64))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 px: above the limit, below twice it
    with pytest.raises(BadImageError, match="DecompressionBomb"):
        decode_image(data, "bomb")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # above twice the limit: PIL's own error
    with pytest.raises(BadImageError, match="DecompressionBombError"):
        decode_image(data, "bomb")


def _assert_ramp(img: Image.Image, min_levels: int = 250) -> None:
    """An RGB grey ramp from black to white: monotone, nearly every 8-bit level, channels equal."""
    assert img.mode == "RGB"
    pixels = np.asarray(img)
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 0] == pixels[..., 2]).all()
    flat = pixels[..., 0].reshape(-1).astype(int)
    assert (np.diff(flat) >= 0).all()
    assert flat[0] == 0 and flat[-1] == 255
    assert len(np.unique(flat)) >= min_levels
    assert (flat == 255).mean() < 0.01  # clipping by convert("RGB") made 99.6% of a ramp white


def _encoded(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


RAMP16 = np.linspace(0, 65535, 64 * 64).astype(np.uint16).reshape(64, 64)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_decode_16_bit_ramp_keeps_its_levels(tmp_path, fmt):
    path = tmp_path / f"ramp.{fmt.lower()}"
    Image.fromarray(RAMP16).save(path)
    assert Image.open(path).mode == "I;16"
    img = decode_image(str(path), path.name)
    _assert_ramp(img)
    assert (np.asarray(img)[..., 0] == (RAMP16 >> 8)).all()


def test_decode_big_endian_16_bit_tiff():
    img = Image.frombytes("I;16B", (64, 64), RAMP16.astype(">u2").tobytes())
    data = _encoded(img, "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "I;16B"
    decoded = decode_image(data, "ramp16b.tiff")
    _assert_ramp(decoded)
    assert (np.asarray(decoded)[..., 0] == (RAMP16 >> 8)).all()


@pytest.mark.parametrize(
    "values, mode",
    [
        (np.linspace(0, 1, 64 * 64, dtype=np.float32), "F"),  # float in [0, 1]: scaled by 255
        (np.linspace(0, 255, 64 * 64, dtype=np.float32), "F"),  # already 8-bit values: kept
        (np.linspace(-3, 7, 64 * 64, dtype=np.float32), "F"),  # any other range: stretched
        (np.linspace(0, 65535, 64 * 64).astype(np.int32), "I"),  # 16-bit values: >> 8
        (np.linspace(-(10**6), 10**6, 64 * 64).astype(np.int32), "I"),  # stretched
    ],
)
def test_decode_float_and_32_bit_images_keep_their_levels(values, mode):
    img = Image.fromarray(values.reshape(64, 64))
    assert img.mode == mode
    _assert_ramp(decode_image(_encoded(img, "TIFF"), f"ramp-{mode}.tiff"))
    # the in-memory path (no file format in between) takes the same conversion
    _assert_ramp(_to_rgb(img))


def test_decode_float_image_with_nan_is_not_garbage():
    values = np.linspace(0, 1, 16 * 16, dtype=np.float32).reshape(16, 16)
    values[0, 0] = np.nan
    pixels = np.asarray(decode_image(_encoded(Image.fromarray(values), "TIFF"), "nan.tiff"))
    assert pixels[0, 0, 0] == 0 and pixels[-1, -1, 0] == 255 and pixels[8, 0, 0] == 128


# -- ImageFolder ---------------------------------------------------------------------------------


def test_image_folder_recursive_sorted(tmp_path):
    write_image(tmp_path / "b.jpg", GREEN)
    write_image(tmp_path / "a.png", RED, fmt="PNG")
    write_image(tmp_path / "sub" / "c.JPEG", BLUE)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden.jpg").write_bytes(b"x")
    folder = ImageFolder(str(tmp_path))
    assert folder.files == ["a.png", "b.jpg", "sub/c.JPEG"]
    assert folder.describe(2) == str(tmp_path / "sub" / "c.JPEG")
    assert close(mean_colour(folder.load(0)), RED)
    assert close(mean_colour(folder.load(2)), BLUE)
    assert len(ImageFolder(str(tmp_path), recursive=False)) == 2
    assert ImageFolder(str(tmp_path), extensions=("png",)).files == ["a.png"]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
@pytest.mark.parametrize("absolute", [False, True])
def test_image_folder_symlink_loop_lists_each_real_file_once(tmp_path, absolute):
    root = tmp_path / "imgs"
    write_image(root / "a.png", RED, fmt="PNG")
    write_image(root / "sub" / "b.png", GREEN, fmt="PNG")
    # a cycle: sub/up/sub/up/... was walked until the OS refused the path (82 files for 2)
    os.symlink(root if absolute else "..", root / "sub" / "up")
    folder = ImageFolder(str(root))
    assert folder.files == ["a.png", "sub/b.png"]
    assert close(mean_colour(folder.load(1)), GREEN)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_image_folder_follows_links_that_are_not_loops(tmp_path):
    write_image(tmp_path / "elsewhere" / "c.png", BLUE, fmt="PNG")
    root = tmp_path / "imgs"
    write_image(root / "real" / "a.png", RED, fmt="PNG")
    os.symlink(tmp_path / "elsewhere", root / "linked")  # outside root: followed
    os.symlink("real", root / "alias")  # a second path to a folder already listed: once, by its real path
    os.symlink("../linked", root / "real" / "again")  # a link to a link already followed: once
    folder = ImageFolder(str(root))
    assert folder.files == ["linked/c.png", "real/a.png"]
    assert close(mean_colour(folder.load(0)), BLUE)


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does_not_exist"):
        ImageFolder(str(tmp_path / "does_not_exist"))
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(NotADirectoryError, match="file.jpg"):
        ImageFolder(str(tmp_path / "file.jpg"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images under .*empty"):
        ImageFolder(str(tmp_path / "empty"))
    with pytest.raises(IndexError, match=r"index 5 out of range \[0, 1\)"):
        ImageFolder(str(tmp_path)).load(5)


def test_image_folder_file_deleted_after_indexing(tmp_path):
    path = write_image(tmp_path / "gone.jpg")
    folder = ImageFolder(str(tmp_path))
    path.unlink()
    with pytest.raises(BadImageError, match="gone.jpg"):
        folder.load(0)


# -- JsonlManifest -------------------------------------------------------------------------------


def test_jsonl_manifest_resolves_relative_paths(tmp_path):
    write_image(tmp_path / "imgs" / "r.jpg", RED)
    absolute = write_image(tmp_path / "elsewhere" / "g.jpg", GREEN)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        json.dumps({"image": "imgs/r.jpg", "caption": "red"})
        + "\n\n"
        + json.dumps({"image": str(absolute)})
        + "\n"
    )
    source = JsonlManifest(str(manifest))
    assert len(source) == 2
    assert close(mean_colour(source.load(0)), RED)
    assert close(mean_colour(source.load(1)), GREEN)
    assert source.describe(1) == f"{absolute} ({manifest}:3)"  # blank line 2 is skipped, numbering kept


def test_jsonl_manifest_root_and_key(tmp_path):
    write_image(tmp_path / "data" / "b.jpg", BLUE)
    manifest = tmp_path / "meta" / "m.jsonl"
    manifest.parent.mkdir()
    manifest.write_text(json.dumps({"path": "b.jpg"}) + "\n")
    source = JsonlManifest(str(manifest), image_key="path", root=str(tmp_path / "data"))
    assert close(mean_colour(source.load(0)), BLUE)


@pytest.mark.parametrize(
    "lines, message",
    [
        (['{"image": "a.jpg"}', '{"image": "b.jpg"'], r"m\.jsonl:2: invalid JSON"),
        (['{"image": "a.jpg"}', "[1, 2]"], r"m\.jsonl:2: expected a JSON object, got list"),
        (
            ['{"img": "a.jpg", "caption": "x"}'],
            r"m\.jsonl:1: no 'image' field; the record has keys 'img', 'caption'",
        ),
        (['{"image": 3}'], r"m\.jsonl:1: 'image' must be a non-empty path string, got 3"),
        (["", "  "], r"lists no images"),
    ],
)
def test_jsonl_manifest_bad_lines(tmp_path, lines, message):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=message):
        JsonlManifest(str(manifest))


def test_jsonl_manifest_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        JsonlManifest(str(tmp_path / "missing.jsonl"))


def test_jsonl_missing_image_is_bad_image_not_crash(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"image": "absent.jpg"}) + "\n")
    with pytest.raises(BadImageError, match=r"absent\.jpg .*m\.jsonl:1"):
        JsonlManifest(str(manifest)).load(0)


# -- brace expansion and shard lists -------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern, expected",
    [
        ("a.tar", ["a.tar"]),
        ("s-{000..002}.tar", ["s-000.tar", "s-001.tar", "s-002.tar"]),
        ("s-{8..10}.tar", ["s-8.tar", "s-9.tar", "s-10.tar"]),
        # a bare 0 bound is not zero padding (bash and braceexpand agree); 00 is
        ("{0..11}", [str(i) for i in range(12)]),
        ("{00..11}", [f"{i:02d}" for i in range(12)]),
        ("{-0..2}", ["0", "1", "2"]),
        ("{-00..2}", ["000", "001", "002"]),
        ("{-05..1}", ["-05", "-04", "-03", "-02", "-01", "000", "001"]),
        ("{10..08}", ["10", "09", "08"]),
        ("{0..0}", ["0"]),
        ("s-{2..0}", ["s-2", "s-1", "s-0"]),
        ("{a,b}-{0..1}", ["a-0", "a-1", "b-0", "b-1"]),
        ("x{a,{b,c}}y", ["xay", "xby", "xcy"]),
        ("lit{eral}", ["lit{eral}"]),
    ],
)
def test_expand_braces(pattern, expected):
    assert expand_braces(pattern) == expected


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize(
    "pattern", ["s-{0..11}.tar", "{00..11}", "{8..10}", "{-0..2}", "{-1..01}", "{007..9}"]
)
def test_expand_braces_matches_bash(pattern):
    out = subprocess.run(["bash", "-c", f"echo {pattern}"], capture_output=True, text=True, check=True)
    assert expand_braces(pattern) == out.stdout.split()


def test_expand_braces_unbalanced():
    with pytest.raises(ValueError, match="unbalanced"):
        expand_braces("s-{000..002.tar")


def test_expand_urls_errors(tmp_path):
    write_shard(tmp_path / "s-000.tar", {})
    with pytest.raises(
        FileNotFoundError, match=r"s-001\.tar' does not exist \(from '.*s-\{000\.\.001\}\.tar'\)"
    ):
        expand_urls(str(tmp_path / "s-{000..001}.tar"))
    with pytest.raises(FileNotFoundError, match=r"no tar shards match .*q-\*\.tar"):
        expand_urls(str(tmp_path / "q-*.tar"))
    with pytest.raises(ValueError, match="not a local path"):
        expand_urls("https://example.com/s-000.tar")
    with pytest.raises(ValueError, match="urls is empty"):
        expand_urls([])
    assert expand_urls("file://" + str(tmp_path / "s-000.tar")) == [str(tmp_path / "s-000.tar")]


# -- TarShards -----------------------------------------------------------------------------------


def make_shards(tmp_path, n_shards=3, per_shard=4):
    colours = {}
    for s in range(n_shards):
        members = {}
        for k in range(per_shard):
            key = f"sample{s:02d}{k:02d}"
            colour = (40 * s + 10, 50 * k + 10, 128)
            colours[f"{key}"] = colour
            members[f"{key}.txt"] = f"caption {key}".encode()
            members[f"{key}.jpg"] = image_bytes(colour)
            members[f"{key}.json"] = b"{}"
        write_shard(tmp_path / f"shard-{s:03d}.tar", members)
    return colours


def test_tar_shards_brace_pattern_and_random_access(tmp_path):
    colours = make_shards(tmp_path)
    source = TarShards(str(tmp_path / "shard-{000..002}.tar"))
    assert len(source) == 12
    assert source.keys == sorted(colours)  # shard order, then order within the shard
    for i in [11, 0, 5, 5, 7]:  # any order, repeats
        assert close(mean_colour(source.load(i)), colours[source.keys[i]])
    assert source.describe(5) == f"{tmp_path / 'shard-001.tar'}:sample0101"


def test_tar_shards_unpadded_range_from_zero(tmp_path):
    for s in range(11):  # s-0.tar ... s-10.tar, as bash writes {0..10}
        write_shard(tmp_path / f"s-{s}.tar", {f"k{s:02d}.png": image_bytes((10 * s, 0, 0), fmt="PNG")})
    source = TarShards(str(tmp_path / "s-{0..10}.tar"), index_cache=False)
    assert source.shards == [str(tmp_path / f"s-{s}.tar") for s in range(11)]
    assert source.keys == [f"k{s:02d}" for s in range(11)]


def test_tar_shards_keep_the_most_recently_used_descriptors_open(tmp_path):
    make_shards(tmp_path)  # 3 shards of 4 samples
    source = TarShards(str(tmp_path / "shard-{000..002}.tar"))
    source._MAX_OPEN_FILES = 2
    for i in (0, 4, 0, 8):  # shards 0, 1, 0 again, then 2: shard 1 is the least recently used
        source.load(i)
    assert list(source._fds) == [0, 2]
    source.close()


def test_tar_shards_glob_list_and_pickle(tmp_path):
    colours = make_shards(tmp_path, n_shards=2, per_shard=2)
    by_glob = TarShards(str(tmp_path / "shard-*.tar"))
    by_list = TarShards([str(tmp_path / "shard-000.tar"), str(tmp_path / "shard-001.tar")])
    assert by_glob.keys == by_list.keys
    by_glob.load(0)  # opens a descriptor, which must not travel in the pickle
    clone = pickle.loads(pickle.dumps(by_glob))
    assert clone._fds == {}
    assert close(mean_colour(clone.load(3)), colours[clone.keys[3]])
    by_glob.close()


def test_tar_shards_extension_preference_and_folders(tmp_path):
    write_shard(
        tmp_path / "s.tar",
        {
            "d/one.png": image_bytes(RED, fmt="PNG"),
            "d/one.jpg": image_bytes(GREEN),  # .jpg preferred over .png
            "d/two.webp": image_bytes(BLUE, fmt="WEBP"),
            "three.txt": b"no image, not a sample",
            "d/.DS_Store": b"junk",
        },
    )
    source = TarShards(str(tmp_path / "s.tar"))
    assert source.keys == ["d/one", "d/two"]
    assert close(mean_colour(source.load(0)), GREEN)
    assert close(mean_colour(source.load(1)), BLUE, tol=12)


def test_tar_shards_corrupt_member_is_bad_image(tmp_path):
    write_shard(
        tmp_path / "s.tar", {"a.jpg": image_bytes(RED), "b.jpg": truncated_jpeg(), "c.jpg": random_bytes()}
    )
    source = TarShards(str(tmp_path / "s.tar"))
    source.load(0)
    for i, key in [(1, "b"), (2, "c")]:
        with pytest.raises(BadImageError, match=rf"s\.tar:{key}: "):
            source.load(i)


def test_tar_shards_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing-000.tar"):
        TarShards(str(tmp_path / "missing-000.tar"))
    write_shard(tmp_path / "txt.tar", {"a.txt": b"x"})
    with pytest.raises(ValueError, match=r"no samples with an image member .* 1 shard\(s\): .*txt\.tar"):
        TarShards(str(tmp_path / "txt.tar"))
    with tarfile.open(tmp_path / "z.tar.gz", "w:gz") as archive:
        info = tarfile.TarInfo("a.jpg")
        data = image_bytes(RED)
        info.size = len(data)
        import io

        archive.addfile(info, io.BytesIO(data))
    with pytest.raises(ValueError, match=r"z\.tar\.gz' is not an uncompressed tar"):
        TarShards(str(tmp_path / "z.tar.gz"))
