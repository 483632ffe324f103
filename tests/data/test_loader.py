import pytest
import torch
from torch.utils.data import SequentialSampler

from glmkit.data.collate import StackCollate
from glmkit.data.loader import ResumableDataLoader, ResumableSampler
from glmkit.data.mixture import Mixture
from glmkit.data.transforms import ToTensor
from tests.data.test_mixture import Solid


def mixture(n=40):
    return Mixture({"a": Solid(100, 1), "b": Solid(100, 2)}, None, ToTensor(), num_samples=n)


def loader(dataset, batch_size=4, num_replicas=1, rank=0, **kwargs):
    sampler = ResumableSampler(dataset, num_replicas=num_replicas, rank=rank, keys_with_epoch=True)
    return ResumableDataLoader(
        dataset, batch_size=batch_size, sampler=sampler, collate_fn=StackCollate(), drop_last=True, **kwargs
    )


def indices(batches):
    return [b["index"].tolist() for b in batches]


@pytest.mark.parametrize("n, world", [(40, 2), (41, 3), (7, 7)])
def test_sampler_ranks_are_disjoint_and_equal(n, world):
    per_rank = [list(ResumableSampler(range(n), num_replicas=world, rank=r)) for r in range(world)]
    assert len({len(p) for p in per_rank}) == 1 and len(per_rank[0]) == n // world
    flat = [i for p in per_rank for i in p]
    assert len(set(flat)) == len(flat)
    assert sorted(flat) == list(range(n // world * world))  # a prefix: consumption is contiguous


def test_sampler_shuffle_epoch_and_keys():
    s = ResumableSampler(range(20), shuffle=True, seed=1, keys_with_epoch=True)
    first = list(s)
    assert sorted(i for _, i in first) == list(range(20)) and {e for e, _ in first} == {0}
    s.set_epoch(1)
    second = list(s)
    assert {e for e, _ in second} == {1} and [i for _, i in second] != [i for _, i in first]
    s.skip(5)
    assert list(s) == second[5:]
    assert list(s) == second  # skip is one-shot


def test_sampler_pads_without_drop_last():
    s = ResumableSampler(range(5), num_replicas=2, rank=1, drop_last=False)
    assert len(s) == 3 and list(s) == [1, 3, 0]


def test_sampler_errors():
    with pytest.raises(ValueError, match="gives rank 0 of 4 no samples"):
        ResumableSampler(range(3), num_replicas=4, rank=0)
    with pytest.raises(ValueError, match="Invalid rank"):
        ResumableSampler(range(3), num_replicas=2, rank=2)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_mid_epoch_without_lightning(num_workers):
    ds = mixture(40)
    straight = loader(ds, num_workers=num_workers)
    full = indices(straight)
    assert len(full) == 10

    first = loader(ds, num_workers=num_workers)
    it = iter(first)
    head = [next(it) for _ in range(3)]
    state = first.state_dict()
    assert state["epoch"] == 0 and state["batches"] == 3
    del it

    resumed = loader(ds, num_workers=num_workers)
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state  # restored but not yet iterated: the position stands
    tail = list(resumed)
    assert indices(head) + indices(tail) == full
    assert resumed.state_dict()["batches"] == 10
    assert len(indices(resumed)) == 10  # the skip applies once


def test_resume_follows_the_epoch():
    ds = mixture(16)
    dl = loader(ds)
    dl.sampler.set_epoch(2)
    it = iter(dl)
    next(it)
    state = dl.state_dict()
    assert state["epoch"] == 2 and state["batches"] == 1

    other = loader(ds)
    other.load_state_dict(state)
    other.sampler.set_epoch(3)  # a later epoch: the saved position belongs to epoch 2, so no skip
    assert len(list(other)) == 4

    again = loader(ds)
    again.load_state_dict(state)  # without Lightning the state sets the epoch itself
    batches = list(again)
    assert len(batches) == 3
    straight = loader(ds)
    straight.sampler.set_epoch(2)
    expected = list(straight)[1:]
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(batches, expected, strict=True))


def test_layout_mismatch_is_refused_mid_epoch_only():
    ds = mixture(40)
    state = {"version": 1, "epoch": 0, "batches": 3, "batch_size": 4, "num_replicas": 2, "num_samples": 40}
    with pytest.raises(
        ValueError,
        match=r"cannot resume mid-epoch \(batch 3 of 5\): .*'num_replicas': 2.* differs .*'num_replicas': 1",
    ):
        loader(ds).load_state_dict(state)
    # epoch boundaries carry over: nothing consumed, or the whole (5-batch) epoch consumed
    fresh = loader(ds)
    fresh.load_state_dict({**state, "batches": 0})
    assert len(list(fresh)) == 10
    done = loader(ds)
    done.load_state_dict({**state, "batches": 5})
    assert done.state_dict()["batches"] == 10 and done.state_dict()["num_replicas"] == 1
    assert list(done) == []
    with pytest.raises(ValueError, match=r"missing \['batches'\]"):
        loader(ds).load_state_dict({k: v for k, v in state.items() if k != "batches"})


def plain_loader(data, batch_size, drop_last=False):
    sampler = ResumableSampler(data, drop_last=drop_last)
    return ResumableDataLoader(data, batch_size=batch_size, sampler=sampler, drop_last=drop_last)


@pytest.mark.parametrize("new_batch_size", [3, 5])
def test_layout_change_mid_epoch_without_drop_last_is_refused(new_batch_size):
    # 10 samples in batches of 4: 3 batches (the last one short); 2 consumed is mid-epoch. Floor
    # division took the epoch to be 2 batches long, so batch size 5 resumed "at the end", losing 8, 9.
    data = list(range(10))
    first = plain_loader(data, 4)
    it = iter(first)
    assert [next(it).tolist() for _ in range(2)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    state = first.state_dict()
    assert state["epoch_batches"] == 3 and state["drop_last"] is False
    with pytest.raises(
        ValueError,
        match=r"cannot resume mid-epoch \(batch 2 of 3\): .*'batch_size': 4.* differs from this run's "
        rf"\{{'batch_size': {new_batch_size}.*'drop_last': False\}}",
    ):
        plain_loader(data, new_batch_size).load_state_dict(state)
    same = plain_loader(data, 4)
    same.load_state_dict(state)
    assert [b.tolist() for b in same] == [[8, 9]]


def test_layout_change_at_the_end_of_an_epoch_without_drop_last_carries_over():
    data = list(range(10))
    first = plain_loader(data, 4)
    assert len(list(first)) == 3
    done = plain_loader(data, 5)
    done.load_state_dict(first.state_dict())
    assert list(done) == [] and done.state_dict()["batches"] == 2


def test_drop_last_change_mid_epoch_is_refused():
    data = list(range(10))
    first = plain_loader(data, 4, drop_last=True)
    it = iter(first)
    next(it)
    with pytest.raises(ValueError, match=r"'drop_last': True\}.* differs .*'drop_last': False\}"):
        plain_loader(data, 4, drop_last=False).load_state_dict(first.state_dict())


def test_version_1_states_still_load():
    # no drop_last / epoch_batches: this loader's drop_last is assumed for the saved layout
    v1 = {"version": 1, "epoch": 0, "batches": 2, "batch_size": 4, "num_replicas": 1, "num_samples": 10}
    same = plain_loader(list(range(10)), 4)
    same.load_state_dict(v1)
    assert [b.tolist() for b in same] == [[8, 9]]
    with pytest.raises(ValueError, match=r"cannot resume mid-epoch \(batch 2 of 3\)"):
        plain_loader(list(range(10)), 5).load_state_dict(v1)


def test_other_samplers_give_a_plain_loader():
    # Lightning rebuilds the train loader with a SequentialSampler for Trainer(overfit_batches=N)
    data = list(range(6))
    dl = ResumableDataLoader(data, batch_size=4, sampler=SequentialSampler(data), drop_last=False)
    assert not dl.resumable
    assert [b.tolist() for b in dl] == [[0, 1, 2, 3], [4, 5]]
    assert dl.state_dict() == {}
    dl.load_state_dict({})  # what it saved: nothing to restore
    state = {"version": 2, "epoch": 0, "batches": 1, "batch_size": 4, "num_replicas": 1, "num_samples": 6}
    with pytest.raises(
        ValueError, match=r"has a SequentialSampler, not a ResumableSampler .*overfit_batches"
    ):
        dl.load_state_dict(state)
    resumable = plain_loader(data, 4)
    assert resumable.resumable
    resumable.load_state_dict({})  # a state saved by a plain loader resumes nothing
    assert len(list(resumable)) == 2


def test_loader_errors():
    ds = mixture(8)
    with pytest.raises(TypeError, match="needs a ResumableSampler, got NoneType"):
        ResumableDataLoader(ds, batch_size=2)
    with pytest.raises(ValueError, match="not batch_sampler or shuffle"):
        ResumableDataLoader(ds, batch_size=2, sampler=ResumableSampler(ds), shuffle=True)


def test_collate():
    ds = mixture(8)
    batch = StackCollate()([ds[i] for i in range(3)])
    assert batch["image"].shape == (3, 3, 4, 4) and batch["index"].dtype == torch.long
    assert batch["index"].tolist() == [0, 1, 2] and len(batch["source"]) == 3 and batch["skipped"] == []
    samples = [
        {"image": torch.zeros(3, 2, 2), "source": "a", "index": 0, "skipped": ["x: bad"]},
        {"image": torch.zeros(3, 2, 2), "source": "b", "index": 1, "skipped": ["y: bad", "z: bad"]},
    ]
    assert StackCollate()(samples)["skipped"] == ["x: bad", "y: bad", "z: bad"]
    samples[1]["image"] = torch.zeros(3, 4, 4)
    with pytest.raises(ValueError, match=r"different shapes \[\(3, 2, 2\), \(3, 4, 4\)\]"):
        StackCollate()(samples)
