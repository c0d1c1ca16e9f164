"""Teacher embedding cache: content-keyed, resumable, split by rank; reader for distillation."""

from g2l.embed.cache import CacheError, CachePart, EmbeddingCache, open_cache
from g2l.embed.config import EmbedConfig
from g2l.embed.key import cache_key, key_material
from g2l.embed.runner import EmbedError, compute_key, forward_with_backoff, run_embed
from g2l.embed.shards import ShardError, decode_tile, iter_shard, load_shard_index

__all__ = [
    "CacheError",
    "CachePart",
    "EmbedConfig",
    "EmbedError",
    "EmbeddingCache",
    "ShardError",
    "cache_key",
    "compute_key",
    "decode_tile",
    "forward_with_backoff",
    "iter_shard",
    "key_material",
    "load_shard_index",
    "open_cache",
    "run_embed",
]
