"""Sparse 3D spiking convolution for point clouds: ``SparseSpikeTensor``, kernel maps, submanifold and strided
sparse conv (gather-GEMM-scatter, trains on CPU and GPU without spconv), sparse BatchNorm, global pooling, spike
voxel coding and the E-3DSNN spiking activations (bollossom/E-3DSNN)."""

from spikelib.sparse.activation import IntegerSpike, SparseLIF, integer_spike
from spikelib.sparse.conv import SparseConv3d, SubMConv3d, sparse_conv3d, weight_from_dense, weight_to_dense
from spikelib.sparse.norm import SparseBatchNorm
from spikelib.sparse.pool import global_avg_pool, global_max_pool
from spikelib.sparse.rulebook import KernelMap, build_kernel_map, get_kernel_map
from spikelib.sparse.tensor import SparseSpikeTensor
from spikelib.sparse.voxel import SpikeVoxelCoding, collate_voxels, grid_sample, normalize_coords, random_scale_shift

__all__ = ["IntegerSpike", "KernelMap", "SparseBatchNorm", "SparseConv3d", "SparseLIF", "SparseSpikeTensor",
           "SpikeVoxelCoding", "SubMConv3d", "build_kernel_map", "collate_voxels", "get_kernel_map",
           "global_avg_pool", "global_max_pool", "grid_sample", "integer_spike", "normalize_coords",
           "random_scale_shift", "sparse_conv3d", "weight_from_dense", "weight_to_dense"]
