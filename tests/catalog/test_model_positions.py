"""max_position_embeddings of the models whose source was strengthened, as their config.json
says (each toml's source names the copy it was read in)."""

import pytest

from kvmodel.catalog.hardware import raw_entry

POSITIONS = {"llama-4-scout": 10_485_760, "llama-4-maverick": 1_048_576,
             "qwen2.5-72b": 32_768, "qwen3.5-9b": 262_144}


@pytest.mark.parametrize("key, n", sorted(POSITIONS.items()))
def test_max_positions_as_published(key, n):
    e = raw_entry("model", key)
    assert e["max_position_embeddings"] == n
    assert "max_position" in e["source"] or "context length" in e["source"]
