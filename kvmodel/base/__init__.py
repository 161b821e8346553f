"""Layer 0: what every other layer stands on — unit parsing (:mod:`.units`), schema-checked
quantities with unit and source (:mod:`.schema`), result-field helpers and renamed-field aliases
(:mod:`.fields`), and scalar/array dispatch (:mod:`.xp`). Imports numpy only."""
