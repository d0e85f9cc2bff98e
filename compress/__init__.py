"""compress: LLaVA-Scissor token compression and the rolling token memory. Pure tensor code: torch only."""

from compress.baselines import (
    PEERS,
    l2norm_topk,
    random_drop,
    tome_merge,
    tome_plain,
    uniform_frames,
    with_merge,
)
from compress.budget import BudgetStats, compress_to_budget, compress_to_budget_with_stats
from compress.memory import EntryInfo, MemoryUpdate, TokenMemory
from compress.quality import coverage, nearest_cosine, retention, worst_coverage
from compress.scc import (
    SccStats,
    compress_video,
    compress_video_with_stats,
    cosine_similarity,
    final_merge,
    frame_components,
    graph_components,
    merge_by_labels,
    semantic_components,
)

__all__ = [
    "PEERS",
    "BudgetStats",
    "EntryInfo",
    "MemoryUpdate",
    "SccStats",
    "TokenMemory",
    "compress_to_budget",
    "compress_to_budget_with_stats",
    "compress_video",
    "compress_video_with_stats",
    "cosine_similarity",
    "coverage",
    "final_merge",
    "frame_components",
    "graph_components",
    "l2norm_topk",
    "merge_by_labels",
    "nearest_cosine",
    "random_drop",
    "retention",
    "semantic_components",
    "tome_merge",
    "tome_plain",
    "uniform_frames",
    "with_merge",
    "worst_coverage",
]
