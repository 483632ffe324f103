import json
import os

import pytest

from glmkit.data import tar_index
from glmkit.data.sources import TarShards
from glmkit.data.tar_index import index_file, index_shards, scan_shard, shard_index
from tests.data._files import image_bytes, write_shard

RED, GREEN = (220, 20, 20), (20, 220, 20)


def shard(path, n=3, colour=RED):
    return str(write_shard(path, {f"k{i}.jpg": image_bytes(colour) for i in range(n)} | {"k0.txt": b"x"}))


def forbid_scans(monkeypatch):
    def fail(path):
        raise AssertionError(f"{path} was scanned although its cached index is current")

    monkeypatch.setattr(tar_index, "scan_shard", fail)


def test_sidecar_is_written_once_and_then_read_instead_of_scanning(tmp_path, monkeypatch):
    path = shard(tmp_path / "s-000.tar")
    scanned, left_out, why = shard_index(path)
    assert why is None and (scanned, left_out) == scan_shard(path) and left_out == (0, ())
    sidecar = tmp_path / "s-000.tar.idx.json"
    assert sidecar.exists() and json.loads(sidecar.read_text())["keys"] == ["k0", "k1", "k2"]
    forbid_scans(monkeypatch)
    assert shard_index(path) == (scanned, left_out, None)
    assert TarShards(path).keys == ["k0", "k1", "k2"]


def test_a_rewritten_shard_is_scanned_again(tmp_path):
    path = shard(tmp_path / "s.tar", n=2)
    shard_index(path)
    stat = os.stat(path)
    shard(tmp_path / "s.tar", n=5)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # even within one mtime tick
    index, _, _ = shard_index(path)
    assert [key for key, _, _ in index] == [f"k{i}" for i in range(5)]
    assert len(json.loads((tmp_path / "s.tar.idx.json").read_text())["keys"]) == 5


@pytest.mark.parametrize(
    "content",
    ["{torn", "[]", '{"version": 1}', "null"],
    ids=["torn", "not-a-record", "missing-fields", "null"],
)
def test_an_unreadable_sidecar_is_replaced(tmp_path, content):
    path = shard(tmp_path / "s.tar")
    expected = scan_shard(path)
    (tmp_path / "s.tar.idx.json").write_text(content)
    assert shard_index(path) == (*expected, None)
    assert json.loads((tmp_path / "s.tar.idx.json").read_text())["size"] == os.stat(path).st_size


def test_cache_folder_keeps_same_named_shards_of_different_folders_apart(tmp_path, monkeypatch):
    a = shard(tmp_path / "a" / "shard-000.tar", n=2)
    b = shard(tmp_path / "b" / "shard-000.tar", n=4)
    cache = tmp_path / "cache"
    first = index_shards([a, b], cache=str(cache))
    assert [len(i) for i in first] == [2, 4]
    assert index_file(a, str(cache)) != index_file(b, str(cache))
    assert sorted(p.parent for p in cache.iterdir()) == [cache, cache]
    assert not list((tmp_path / "a").glob("*.json"))  # nothing written beside the data
    forbid_scans(monkeypatch)
    assert index_shards([a, b], cache=str(cache)) == first


def test_cache_off_writes_nothing(tmp_path):
    path = shard(tmp_path / "s.tar")
    assert len(TarShards(path, index_cache=False)) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.tar"]


def test_unwritable_cache_warns_once_and_still_indexes(tmp_path):
    paths = [shard(tmp_path / f"s-{i}.tar") for i in range(3)]
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    with pytest.warns(UserWarning, match=r"could not cache the index of 3 of 3 shard\(s\) \(.*not-a-folder"):
        source = TarShards([*paths], index_cache=str(blocker))
    assert len(source) == 9 and source.load(4).size == (20, 16)


def test_many_shards_keep_their_order_across_index_threads(tmp_path):
    paths = [shard(tmp_path / f"s-{i:02d}.tar", n=1 + i % 3) for i in range(12)]
    threaded = index_shards(paths, workers=4)
    assert threaded == [scan_shard(p)[0] for p in paths]
    source = TarShards(str(tmp_path / "s-*.tar"))
    assert len(source) == sum(1 + i % 3 for i in range(12))
    assert source.describe(len(source) - 1).endswith("s-11.tar:k2")


def test_a_bare_glob_over_the_shard_folder_skips_the_sidecars(tmp_path):
    shard(tmp_path / "shard-0.tar")
    assert len(TarShards(str(tmp_path / "*"))) == 3  # writes shard-0.tar.idx.json beside the shard
    assert (tmp_path / "shard-0.tar.idx.json").exists()
    assert len(TarShards(str(tmp_path / "*"))) == 3  # and the next run does not read it as a shard


def test_samples_without_an_image_are_counted_named_and_warned_once(tmp_path, monkeypatch):
    members = {"ok.jpg": image_bytes(RED), "ok.txt": b"a cat", "gif.gif": b"GIF89a", "gif.txt": b"x"}
    members |= {f"cap{i}.txt": b"no image" for i in range(6)}
    path = str(write_shard(tmp_path / "s.tar", members))
    clean = shard(tmp_path / "t.tar", n=2)
    with pytest.warns(UserWarning, match=r"left out 7 sample\(s\) of 1 of 2 shard") as caught:
        source = TarShards([path, clean])
    assert len(caught) == 1 and source.keys == ["ok", "k0", "k1"]
    message = str(caught[0].message)
    assert "s.tar: 7 (gif, cap0, cap1, cap2, cap3, ...)" in message and "t.tar" not in message
    forbid_scans(monkeypatch)  # the cached index remembers them: the next run warns the same
    with pytest.warns(UserWarning, match=r"s\.tar: 7 \(gif, cap0"):
        TarShards([path, clean])
