"""Spike voxel coding: normalisation, one point per voxel (random in training, first point in eval), collation."""

import pytest
import torch

from spikelib.sparse import SpikeVoxelCoding, collate_voxels, grid_sample, normalize_coords


pytestmark = pytest.mark.usefixtures("one_thread")


def cloud(p=400, seed=0, normals=True):
    g = torch.Generator().manual_seed(seed)
    xyz = torch.rand(p, 3, generator=g, dtype=torch.float64) * 2 - 1
    n = torch.nn.functional.normalize(torch.randn(p, 3, generator=g, dtype=torch.float64), dim=1)
    return torch.cat([xyz, n], 1) if normals else xyz


def brute_force_voxels(xyz, grid_size):
    g = torch.floor(xyz / grid_size).long()
    g = g - g.min(0).values
    voxels = {}
    for i, v in enumerate(g.tolist()):
        voxels.setdefault(tuple(v), []).append(i)
    return voxels


def test_normalize_coords():
    xyz = cloud(normals=False) * 5 + 3
    n = normalize_coords(xyz)
    torch.testing.assert_close(n.mean(0), torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(n.norm(dim=1).max(), torch.tensor(1.0, dtype=torch.float64))
    assert torch.equal(normalize_coords(torch.ones(1, 3)), torch.zeros(1, 3))


def test_eval_is_deterministic_first_point_per_voxel():
    xyz = cloud(normals=False)
    grid, index = grid_sample(xyz, 0.25, training=False)
    grid2, index2 = grid_sample(xyz, 0.25, training=False)
    assert torch.equal(index, index2) and torch.equal(grid, grid2)
    voxels = brute_force_voxels(xyz, 0.25)
    assert len(index) == len(voxels) < len(xyz)                    # several points share voxels
    got = {tuple(g): int(i) for g, i in zip(grid.tolist(), index)}
    assert got == {v: min(ids) for v, ids in voxels.items()}


def test_training_one_random_point_per_voxel():
    xyz = cloud(normals=False)
    voxels = brute_force_voxels(xyz, 0.25)
    picks = []
    for seed in range(5):
        grid, index = grid_sample(xyz, 0.25, training=True, generator=torch.Generator().manual_seed(seed))
        assert len(set(map(tuple, grid.tolist()))) == len(grid) == len(voxels)    # one point per voxel
        for g, i in zip(grid.tolist(), index.tolist()):
            assert i in voxels[tuple(g)]                                          # the point lies in its voxel
        picks.append(index.tolist())
    assert len({tuple(p) for p in picks}) > 1                                     # random between draws
    a = grid_sample(xyz, 0.25, True, torch.Generator().manual_seed(3))[1]
    b = grid_sample(xyz, 0.25, True, torch.Generator().manual_seed(3))[1]
    assert torch.equal(a, b)                                                      # reproducible with a seed


def test_voxel_coding_features_and_collate():
    pts = cloud(300)
    coding = SpikeVoxelCoding(grid_size=0.1)
    grid, feats = coding(pts, training=False)
    assert feats.shape == (grid.shape[0], 6) and coding.in_channels == 6
    xyz = normalize_coords(pts[:, :3])
    _, index = grid_sample(xyz, 0.1, training=False)
    torch.testing.assert_close(feats, torch.cat([xyz[index], pts[index, 3:]], 1))
    assert torch.equal(torch.floor(feats[:, :3] / 0.1).long() - torch.floor(xyz / 0.1).long().min(0).values, grid)
    g2, f2 = coding(pts, training=True, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(f2[:, :3], feats[:, :3])           # augmented in training
    grid3, f3 = SpikeVoxelCoding(0.1, use_normals=False)(pts[:, :3])
    assert f3.shape[1] == 3
    x = collate_voxels([(grid, feats), (grid3, torch.cat([f3, f3], 1))], margin=96)
    assert x.batch_size == 2 and x.num_sites == grid.shape[0] + grid3.shape[0]
    assert x.spatial_shape == tuple(int(v) + 96 for v in torch.cat([grid, grid3]).max(0).values)


def test_voxel_bad_input():
    coding = SpikeVoxelCoding(0.1)
    with pytest.raises(ValueError, match="empty point cloud"):
        coding(torch.zeros(0, 6))
    with pytest.raises(ValueError, match=r"\[P, 3\]"):
        coding(torch.zeros(10, 4))
    with pytest.raises(ValueError, match=r"use_normals=True needs points \[P, 6\]"):
        coding(torch.zeros(10, 3))
    bad = cloud(20)
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        coding(bad)
    with pytest.raises(TypeError, match="floating point"):
        coding(torch.zeros(10, 6, dtype=torch.long))
    with pytest.raises(ValueError, match="grid_size"):
        SpikeVoxelCoding(0.0)
    with pytest.raises(ValueError, match="at least one"):
        collate_voxels([])
    with pytest.raises(ValueError, match="item 0"):
        collate_voxels([(torch.zeros(0, 3, dtype=torch.long), torch.zeros(0, 6))])
