"""compress: LLaVA-Scissor token compression and the rolling token memory. Pure tensor code: torch only."""

from compress.memory import EntryInfo, MemoryUpdate
from compress.scc import (
    SccStats,
    compress_video,
    compress_video_with_stats,
    cosine_similarity,
    merge_by_labels,
    semantic_components,
)

__all__ = [
    "EntryInfo",
    "MemoryUpdate",
    "SccStats",
    "compress_video",
    "compress_video_with_stats",
    "cosine_similarity",
    "merge_by_labels",
    "semantic_components",
]
